{{/*
The pod's image, pull secrets and environment, and the checks that refuse contradictory pod values
(variables set twice, labels the selector owns, a rollout that can never progress, a registry put
in front of a repository that already names one).
*/}}

{{/* Registry: global.imageRegistry (a parent chart's mirror), else image.registry, else none. */}}
{{- define "wep.imageRegistry" -}}
{{- (.Values.global | default dict).imageRegistry | default .Values.image.registry }}
{{- end }}

{{/* Whether a repository starts with a registry host (Docker's rule: the first path component
has a dot or a port, or is localhost). */}}
{{- define "wep.repositoryHasHost" -}}
{{- $parts := splitList "/" . }}
{{- $first := first $parts }}
{{- if and (gt (len $parts) 1) (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) }}true{{ end }}
{{- end }}

{{- define "wep.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- $registry := include "wep.imageRegistry" . }}
{{- $repository := .Values.image.repository }}
{{- if $registry }}
{{- $repository = printf "%s/%s" $registry $repository }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" $repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}
{{- end }}

{{/* global.imagePullSecrets ({name: x} or plain names) then imagePullSecrets, each name once, as
a JSON list of {name}. */}}
{{- define "wep.imagePullSecrets" -}}
{{- $names := list }}
{{- range concat ((.Values.global | default dict).imagePullSecrets | default list) .Values.imagePullSecrets }}
{{- if kindIs "string" . }}
{{- $names = append $names . }}
{{- else }}
{{- $names = append $names .name }}
{{- end }}
{{- end }}
{{- $out := list }}
{{- range $names | uniq }}
{{- $out = append $out (dict "name" .) }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/* The proxy.* variables that are set, as a JSON list of {name, value, from}. */}}
{{- define "wep.proxyEnv" -}}
{{- $p := .Values.proxy }}
{{- $seriesDrop := $p.seriesDrop }}
{{- if kindIs "slice" $seriesDrop }}{{ $seriesDrop = join "; " $seriesDrop }}{{ end }}
{{- $all := list
  (dict "name" "PROXY_SCRAPE_TIMEOUT_SECONDS" "value" $p.scrapeTimeoutSeconds "from" "proxy.scrapeTimeoutSeconds")
  (dict "name" "PROXY_TIMEOUT_MARGIN_SECONDS" "value" $p.timeoutMarginSeconds "from" "proxy.timeoutMarginSeconds")
  (dict "name" "PROXY_CONNECT_TIMEOUT_SECONDS" "value" $p.connectTimeoutSeconds "from" "proxy.connectTimeoutSeconds")
  (dict "name" "PROXY_MAX_INFLIGHT" "value" $p.maxInflight "from" "proxy.maxInflight")
  (dict "name" "PROXY_COALESCE" "value" $p.coalesce "from" "proxy.coalesce")
  (dict "name" "PROXY_COALESCE_MAX_BUFFER_BYTES" "value" $p.coalesceMaxBufferBytes "from" "proxy.coalesceMaxBufferBytes")
  (dict "name" "PROXY_METRIC_KEEP" "value" $p.metricKeep "from" "proxy.metricKeep")
  (dict "name" "PROXY_METRIC_DROP" "value" $p.metricDrop "from" "proxy.metricDrop")
  (dict "name" "PROXY_SERIES_DROP" "value" $seriesDrop "from" "proxy.seriesDrop")
  (dict "name" "PROXY_MAX_SERIES" "value" $p.maxSeries "from" "proxy.maxSeries")
  (dict "name" "PROXY_NODE_METRICS" "value" $p.nodeMetrics "from" "proxy.nodeMetrics")
  (dict "name" "PROXY_MAX_CONNECTIONS" "value" $p.maxConnections "from" "proxy.maxConnections")
  (dict "name" "PROXY_HEADER_READ_TIMEOUT_SECONDS" "value" $p.headerReadTimeoutSeconds "from" "proxy.headerReadTimeoutSeconds")
  (dict "name" "PROXY_IDLE_TIMEOUT_SECONDS" "value" $p.idleTimeoutSeconds "from" "proxy.idleTimeoutSeconds")
  (dict "name" "PROXY_MAX_HEADER_BYTES" "value" $p.maxHeaderBytes "from" "proxy.maxHeaderBytes")
  (dict "name" "PROXY_SHUTDOWN_GRACE_SECONDS" "value" $p.shutdownGraceSeconds "from" "proxy.shutdownGraceSeconds")
  (dict "name" "PROXY_READY_MAX_AGE_SECONDS" "value" $p.readyMaxAgeSeconds "from" "proxy.readyMaxAgeSeconds")
  (dict "name" "PROXY_LOG_FORMAT" "value" $p.logFormat "from" "proxy.logFormat")
  (dict "name" "RUST_LOG" "value" $p.rustLog "from" "proxy.rustLog")
}}
{{- $set := list }}
{{- range $all }}
{{- if not (kindIs "invalid" .value) }}
{{- $set = append $set (dict "name" .name "value" (include "wep.envValue" .value) "from" .from) }}
{{- end }}
{{- end }}
{{- $c := .Values.collectors | default dict }}
{{- range $pair := list (list "PROXY_COLLECT" "fast") (list "PROXY_COLLECT_ALLOW" "allow") (list "PROXY_SLOW_COLLECT" "slow") }}
{{- $names := get $c (index $pair 1) }}
{{- if $names }}
{{- $set = append $set (dict "name" (index $pair 0) "value" (join "," $names) "from" (printf "collectors.%s" (index $pair 1))) }}
{{- end }}
{{- end }}
{{- toJson $set }}
{{- end }}

{{/* Whether PROXY_LISTEN is rendered: only when it differs from the binary's 0.0.0.0:9100. */}}
{{- define "wep.listenRendered" -}}
{{- if or (ne .Values.listenAddress "0.0.0.0") (ne (int .Values.listenPort) 9100) }}true{{ end }}
{{- end }}

{{/* Every variable the chart itself renders -> the value that sets it, as JSON. */}}
{{- define "wep.chartEnvSources" -}}
{{- $sources := dict "PROXY_HOSTIP" "the downward API (status.hostIP), always" "PROXY_PORT" "proxy.port" }}
{{- if include "wep.listenRendered" . }}
{{- $_ := set $sources "PROXY_LISTEN" "listenPort and listenAddress" }}
{{- end }}
{{- range include "wep.proxyEnv" . | fromJsonArray }}
{{- $_ := set $sources .name .from }}
{{- end }}
{{- range include "wep.securityEnv" . | fromJsonArray }}
{{- $_ := set $sources .name "the tls, auth and exporter values" }}
{{- end }}
{{- toJson $sources }}
{{- end }}

{{/* env (name: value, the community charts' shape) and extraEnv (EnvVar objects), in that order,
as one JSON list of EnvVar objects. */}}
{{- define "wep.extraEnv" -}}
{{- $out := list }}
{{- range $name, $value := .Values.env }}
{{- $out = append $out (dict "name" $name "value" (include "wep.envValue" $value)) }}
{{- end }}
{{- range .Values.extraEnv }}
{{- $out = append $out . }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/* "0", 0 and "0%" are zero. */}}
{{- define "wep.isZero" -}}
{{- if has (toString .) (list "0" "0%") }}true{{ end }}
{{- end }}

{{/* The updateStrategy as rendered: rollingUpdate only with type RollingUpdate. */}}
{{- define "wep.updateStrategy" -}}
{{- $s := .Values.updateStrategy }}
{{- if eq $s.type "RollingUpdate" }}
{{- toYaml (dict "type" $s.type "rollingUpdate" ($s.rollingUpdate | default dict)) }}
{{- else }}
{{- toYaml (dict "type" $s.type) }}
{{- end }}
{{- end }}

{{/* Renders nothing: fails on contradictory pod values, saying what to change. */}}
{{- define "wep.podChecks" -}}
{{- $v := .Values }}
{{- /* Image: a registry in front of a repository that already names one. */}}
{{- $registry := include "wep.imageRegistry" . }}
{{- if and $registry (include "wep.repositoryHasHost" $v.image.repository) }}
{{- $from := ternary "global.imageRegistry" "image.registry" (not (empty (($v.global | default dict).imageRegistry))) }}
{{- fail (printf "image.repository %q starts with a registry host, and %s %q would be put in front of it: set image.registry to that host and image.repository to the rest, or image.registry to \"\"" $v.image.repository $from $registry) }}
{{- end }}
{{- /* Variables: each name once, and none the chart already renders. */}}
{{- $sources := include "wep.chartEnvSources" . | fromJson }}
{{- $seen := dict }}
{{- range $v.extraEnv }}
{{- if hasKey $seen .name }}
{{- fail (printf "extraEnv lists %s twice: Kubernetes keeps only the last one" .name) }}
{{- end }}
{{- $_ := set $seen .name true }}
{{- end }}
{{- range $name, $_ := $v.env }}
{{- if hasKey $seen $name }}
{{- fail (printf "%s is in both env and extraEnv: set it in one of them" $name) }}
{{- end }}
{{- $_ := set $seen $name true }}
{{- end }}
{{- range $name := keys $seen | sortAlpha }}
{{- if hasKey $sources $name }}
{{- fail (printf "env/extraEnv sets %s, which the chart already renders from %s: set it there instead (Kubernetes would keep only one of the two)" $name (get $sources $name)) }}
{{- end }}
{{- end }}
{{- /* Collectors: none both fast and slow, and an allow list that covers both. */}}
{{- $c := $v.collectors | default dict }}
{{- range $name := $c.fast | default list }}
{{- if has $name ($c.slow | default list) }}
{{- fail (printf "collectors: %s is in both collectors.fast and collectors.slow: a collector runs on /metrics or on /metrics/slow, not both" $name) }}
{{- end }}
{{- end }}
{{- if $c.allow }}
{{- range $name := concat ($c.fast | default list) ($c.slow | default list) }}
{{- if not (has $name $c.allow) }}
{{- fail (printf "collectors.allow leaves out %s, which collectors.fast or collectors.slow runs: add it to allow, or leave allow empty (default: fast plus slow)" $name) }}
{{- end }}
{{- end }}
{{- if and (not $c.fast) $c.slow }}
{{- $left := list }}
{{- range $name := $c.allow }}{{ if not (has $name $c.slow) }}{{ $left = append $left $name }}{{ end }}{{ end }}
{{- if not $left }}
{{- fail "collectors.allow names only collectors.slow collectors, which /metrics never runs: add the ones /metrics should run" }}
{{- end }}
{{- end }}
{{- end }}
{{- /* Coalescing: a buffer bound is meaningless with coalescing off. */}}
{{- if and (eq (toString $v.proxy.coalesce) "false") (not (kindIs "invalid" $v.proxy.coalesceMaxBufferBytes)) }}
{{- fail "proxy.coalesceMaxBufferBytes is set but proxy.coalesce is false: the bound applies only to shared exporter requests; drop one of the two" }}
{{- end }}
{{- /* Labels the chart owns: the selector and the Service depend on them. */}}
{{- $own := include "wep.standardLabels" . | fromYaml }}
{{- range $key, $_ := $v.commonLabels }}
{{- if hasKey $own $key }}
{{- fail (printf "commonLabels sets %s, a label the chart sets itself (the DaemonSet's selector and the Service rely on the app.kubernetes.io labels): choose another key" $key) }}
{{- end }}
{{- end }}
{{- range $key, $_ := $v.podLabels }}
{{- if hasKey $own $key }}
{{- fail (printf "podLabels sets %s, a label the chart sets itself (the DaemonSet's selector and the Service rely on the app.kubernetes.io labels): choose another key" $key) }}
{{- end }}
{{- if hasKey ($v.commonLabels | default dict) $key }}
{{- fail (printf "podLabels and commonLabels both set %s: set it in one of them" $key) }}
{{- end }}
{{- end }}
{{- /* A rolling update that can never replace a pod. */}}
{{- with $v.updateStrategy }}
{{- if eq .type "RollingUpdate" }}
{{- $ru := .rollingUpdate | default dict }}
{{- $unavailable := hasKey $ru "maxUnavailable" | ternary $ru.maxUnavailable 1 }}
{{- $surge := hasKey $ru "maxSurge" | ternary $ru.maxSurge 0 }}
{{- if and (include "wep.isZero" $unavailable) (include "wep.isZero" $surge) }}
{{- fail "updateStrategy.rollingUpdate: maxUnavailable and maxSurge are both 0, so a rollout could never replace a pod: set maxUnavailable: 1 (a short gap per node) or maxSurge: 1 (no gap)" }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
