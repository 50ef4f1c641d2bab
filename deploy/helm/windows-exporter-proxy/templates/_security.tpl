{{/*
HTTPS, authentication and the secured hop to the exporter: the Secret mounts, the PROXY_* variables
they feed, the monitors' side of it, and the checks that refuse contradictory values.
*/}}

{{/* Secret mounts live under one directory in the container; a Linux-style path works in Windows
containers too (C:\etc\...), as the kubelet's own service-account token mount shows. */}}
{{- define "wep.mountDir" -}}
/etc/windows-exporter-proxy
{{- end }}

{{- define "wep.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "wep.fullname" .)) .Values.tls.secretName }}
{{- end }}

{{/* The name scrapers verify: a DNS name of the one certificate every pod serves. */}}
{{- define "wep.serverName" -}}
{{- printf "%s.%s.svc" (include "wep.fullname" .) .Release.Namespace }}
{{- end }}

{{/* The Certificate's dnsNames, as a JSON list. */}}
{{- define "wep.dnsNames" -}}
{{- $name := include "wep.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- concat (list $name (printf "%s.%s" $name $ns) (printf "%s.%s.svc" $name $ns) (printf "%s.%s.svc.cluster.local" $name $ns)) .Values.tls.certManager.extraDnsNames | uniq | toJson }}
{{- end }}

{{- define "wep.tokenreview" -}}
{{- if has "tokenreview" .Values.auth.methods }}true{{ end }}
{{- end }}

{{/*
Every Secret/ConfigMap the proxy reads, as JSON {"volumes": [...], "files": {what: path}}. Each
source is mounted once, as a whole directory (never subPath, so updates reach the pod); two
settings naming the same Secret share its mount.
*/}}
{{- define "wep.mounts" -}}
{{- $wanted := list }}
{{- if .Values.tls.enabled }}
{{- $wanted = append $wanted (dict "what" "tls" "kind" "secret" "source" (include "wep.tlsSecretName" .)) }}
{{- end }}
{{- with .Values.tls.clientCA }}
{{- if .secretName }}
{{- $wanted = append $wanted (dict "what" "client-ca" "kind" "secret" "source" .secretName) }}
{{- else if .configMapName }}
{{- $wanted = append $wanted (dict "what" "client-ca" "kind" "configMap" "source" .configMapName) }}
{{- end }}
{{- end }}
{{- with .Values.auth.basic.secretName }}
{{- $wanted = append $wanted (dict "what" "basic-auth" "kind" "secret" "source" .) }}
{{- end }}
{{- with .Values.exporter.tls.ca }}
{{- if .secretName }}
{{- $wanted = append $wanted (dict "what" "exporter-ca" "kind" "secret" "source" .secretName) }}
{{- else if .configMapName }}
{{- $wanted = append $wanted (dict "what" "exporter-ca" "kind" "configMap" "source" .configMapName) }}
{{- end }}
{{- end }}
{{- with .Values.exporter.tls.clientCertSecretName }}
{{- $wanted = append $wanted (dict "what" "exporter-client-cert" "kind" "secret" "source" .) }}
{{- end }}
{{- with .Values.exporter.basicAuth.passwordSecretName }}
{{- $wanted = append $wanted (dict "what" "exporter-basic-auth" "kind" "secret" "source" .) }}
{{- end }}
{{- $dir := include "wep.mountDir" . }}
{{- $volumes := list }}
{{- $dirs := dict }}
{{- $bySource := dict }}
{{- range $wanted }}
{{- $key := printf "%s/%s" .kind .source }}
{{- if not (hasKey $bySource $key) }}
{{- $_ := set $bySource $key .what }}
{{- $volumes = append $volumes (dict "name" .what "kind" .kind "source" .source) }}
{{- end }}
{{- $_ := set $dirs .what (printf "%s/%s" $dir (get $bySource $key)) }}
{{- end }}
{{- toJson (dict "volumes" $volumes "dirs" $dirs) }}
{{- end }}

{{/* The PROXY_* variables of TLS, auth and the exporter hop, as JSON [{name, value}]; only what
differs from the binary's defaults. */}}
{{- define "wep.securityEnv" -}}
{{- $dirs := (include "wep.mounts" . | fromJson).dirs }}
{{- $env := list }}
{{- if .Values.tls.enabled }}
{{- $env = append $env (dict "name" "PROXY_TLS_CERT_FILE" "value" (printf "%s/tls.crt" $dirs.tls)) }}
{{- $env = append $env (dict "name" "PROXY_TLS_KEY_FILE" "value" (printf "%s/tls.key" $dirs.tls)) }}
{{- with .Values.tls.minVersion }}
{{- $env = append $env (dict "name" "PROXY_TLS_MIN_VERSION" "value" .) }}
{{- end }}
{{- end }}
{{- if hasKey $dirs "client-ca" }}
{{- $env = append $env (dict "name" "PROXY_CLIENT_CA_FILE" "value" (printf "%s/%s" (get $dirs "client-ca") .Values.tls.clientCA.key)) }}
{{- end }}
{{- with .Values.auth.methods }}
{{- $env = append $env (dict "name" "PROXY_AUTH" "value" (join "," .)) }}
{{- end }}
{{- with .Values.auth.clientAllowedNames }}
{{- $env = append $env (dict "name" "PROXY_CLIENT_ALLOWED_NAMES" "value" (join "," .)) }}
{{- end }}
{{- if hasKey $dirs "basic-auth" }}
{{- $env = append $env (dict "name" "PROXY_BASIC_AUTH_FILE" "value" (printf "%s/%s" (get $dirs "basic-auth") .Values.auth.basic.key)) }}
{{- end }}
{{- with .Values.auth.tokenreview.audiences }}
{{- $env = append $env (dict "name" "PROXY_TOKENREVIEW_AUDIENCES" "value" (join "," .)) }}
{{- end }}
{{- with .Values.auth.tokenreview.allowedUsers }}
{{- $env = append $env (dict "name" "PROXY_AUTHZ_USERS" "value" (join "," .)) }}
{{- end }}
{{- if .Values.auth.allowPlaintextCredentials }}
{{- $env = append $env (dict "name" "PROXY_ALLOW_PLAINTEXT_CREDENTIALS" "value" "true") }}
{{- end }}
{{- if not (kindIs "invalid" .Values.auth.forwardAuthorization) }}
{{- $env = append $env (dict "name" "PROXY_FORWARD_AUTHORIZATION" "value" (toString .Values.auth.forwardAuthorization)) }}
{{- end }}
{{- with .Values.exporter }}
{{- if eq .scheme "https" }}
{{- $env = append $env (dict "name" "PROXY_EXPORTER_SCHEME" "value" "https") }}
{{- end }}
{{- if hasKey $dirs "exporter-ca" }}
{{- $env = append $env (dict "name" "PROXY_EXPORTER_CA_FILE" "value" (printf "%s/%s" (get $dirs "exporter-ca") .tls.ca.key)) }}
{{- end }}
{{- with .tls.serverName }}
{{- $env = append $env (dict "name" "PROXY_EXPORTER_SERVER_NAME" "value" .) }}
{{- end }}
{{- if .tls.insecureSkipVerify }}
{{- $env = append $env (dict "name" "PROXY_EXPORTER_INSECURE_SKIP_VERIFY" "value" "true") }}
{{- end }}
{{- if hasKey $dirs "exporter-client-cert" }}
{{- $env = append $env (dict "name" "PROXY_EXPORTER_CLIENT_CERT_FILE" "value" (printf "%s/tls.crt" (get $dirs "exporter-client-cert"))) }}
{{- $env = append $env (dict "name" "PROXY_EXPORTER_CLIENT_KEY_FILE" "value" (printf "%s/tls.key" (get $dirs "exporter-client-cert"))) }}
{{- end }}
{{- with .basicAuth.username }}
{{- $env = append $env (dict "name" "PROXY_EXPORTER_BASIC_AUTH_USERNAME" "value" .) }}
{{- end }}
{{- if hasKey $dirs "exporter-basic-auth" }}
{{- $env = append $env (dict "name" "PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE" "value" (printf "%s/%s" (get $dirs "exporter-basic-auth") .basicAuth.passwordKey)) }}
{{- end }}
{{- end }}
{{- toJson $env }}
{{- end }}

{{/*
Scheme, TLS and credentials of one ServiceMonitor endpoint / PodMonitor podMetricsEndpoint.
Called with (dict "root" $ "monitor" .Values.serviceMonitor "kind" "ServiceMonitor").
*/}}
{{- define "wep.endpointSecurity" -}}
{{- $root := .root }}
{{- $m := .monitor }}
{{- $methods := $root.Values.auth.methods }}
{{- if $root.Values.tls.enabled }}
scheme: https
tlsConfig:
  {{- if $m.tlsConfig.insecureSkipVerify }}
  insecureSkipVerify: true
  {{- else }}
  ca:
    secret:
      name: {{ default (include "wep.tlsSecretName" $root) $m.tlsConfig.caSecret.name }}
      key: {{ $m.tlsConfig.caSecret.key }}
  serverName: {{ default (include "wep.serverName" $root) $m.tlsConfig.serverName }}
  {{- end }}
  {{- with $m.tlsConfig.clientCertSecretName }}
  cert:
    secret:
      name: {{ . }}
      key: tls.crt
  keySecret:
    name: {{ . }}
    key: tls.key
  {{- end }}
{{- else }}
scheme: http
{{- end }}
{{- /* One Authorization header per scrape: basic, a token Secret, or Prometheus' own token. */}}
{{- if $m.basicAuthSecretName }}
basicAuth:
  username:
    name: {{ $m.basicAuthSecretName }}
    key: username
  password:
    name: {{ $m.basicAuthSecretName }}
    key: password
{{- else if $m.authorizationSecret.name }}
authorization:
  type: Bearer
  credentials:
    name: {{ $m.authorizationSecret.name }}
    key: {{ $m.authorizationSecret.key }}
{{- else if and (has "tokenreview" $methods) (eq .kind "ServiceMonitor") }}
# Prometheus' own service-account token, checked by the proxy with a TokenReview (kube-prometheus'
# node-exporter way; the operator warns that the field is deprecated in favour of authorization).
bearerTokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token
{{- end }}
{{- end }}

{{/* Values that contradict each other fail the render with what to change. */}}
{{- define "wep.securityChecks" -}}
{{- $v := .Values }}
{{- $methods := $v.auth.methods }}
{{- $cm := $v.tls.certManager }}
{{- if and (not $v.tls.enabled) (or $v.tls.secretName (not (kindIs "invalid" $v.tls.minVersion))) }}
{{- fail "tls.secretName or tls.minVersion is set but tls.enabled is false: the proxy serves plain HTTP" }}
{{- end }}
{{- if and $cm.enabled (not $v.tls.enabled) }}
{{- fail "tls.certManager.enabled needs tls.enabled: the Certificate's Secret is only mounted when the proxy serves HTTPS" }}
{{- end }}
{{- if and $cm.enabled (not $cm.issuerRef.name) }}
{{- fail "tls.certManager.enabled needs tls.certManager.issuerRef.name: the Issuer or ClusterIssuer that signs the proxy's certificate" }}
{{- end }}
{{- if and $v.tls.clientCA.secretName $v.tls.clientCA.configMapName }}
{{- fail "tls.clientCA: set secretName or configMapName, not both" }}
{{- end }}
{{- $clientCA := or $v.tls.clientCA.secretName $v.tls.clientCA.configMapName }}
{{- if has "client-cert" $methods }}
{{- if not $v.tls.enabled }}
{{- fail "auth.methods client-cert needs tls.enabled: a client certificate is only presented in a TLS handshake" }}
{{- end }}
{{- if not $clientCA }}
{{- fail "auth.methods client-cert needs tls.clientCA.secretName or tls.clientCA.configMapName (PROXY_CLIENT_CA_FILE): without a CA no client certificate can be verified" }}
{{- end }}
{{- else }}
{{- if $clientCA }}
{{- fail "tls.clientCA is set but auth.methods does not list client-cert" }}
{{- end }}
{{- if $v.auth.clientAllowedNames }}
{{- fail "auth.clientAllowedNames is set but auth.methods does not list client-cert" }}
{{- end }}
{{- end }}
{{- range list "basic" "tokenreview" }}
{{- if and (has . $methods) (not $v.tls.enabled) (not $v.auth.allowPlaintextCredentials) }}
{{- fail (printf "auth.methods %s without tls.enabled would send credentials in clear text: enable tls, or set auth.allowPlaintextCredentials=true (PROXY_ALLOW_PLAINTEXT_CREDENTIALS)" .) }}
{{- end }}
{{- end }}
{{- if and (has "basic" $methods) (not $v.auth.basic.secretName) }}
{{- fail "auth.methods basic needs auth.basic.secretName: the Secret holding the htpasswd file (PROXY_BASIC_AUTH_FILE)" }}
{{- end }}
{{- if and $v.auth.basic.secretName (not (has "basic" $methods)) }}
{{- fail "auth.basic.secretName is set but auth.methods does not list basic" }}
{{- end }}
{{- if not (has "tokenreview" $methods) }}
{{- if or $v.auth.tokenreview.audiences $v.auth.tokenreview.allowedUsers }}
{{- fail "auth.tokenreview.audiences or allowedUsers is set but auth.methods does not list tokenreview" }}
{{- end }}
{{- end }}
{{- if and $v.auth.tokenreview.scraperClusterRole.subjects (not $v.auth.tokenreview.scraperClusterRole.create) }}
{{- fail "auth.tokenreview.scraperClusterRole.subjects needs scraperClusterRole.create: they are bound to that ClusterRole" }}
{{- end }}
{{- range $key, $kind := dict "serviceMonitor" "ServiceMonitor" "podMonitor" "PodMonitor" }}
{{- $m := get $v $key }}
{{- if $m.enabled }}
{{- $t := $m.tlsConfig }}
{{- if and $m.basicAuthSecretName $m.authorizationSecret.name }}
{{- fail (printf "%s: set basicAuthSecretName or authorizationSecret.name, not both: a scrape carries one Authorization header" $key) }}
{{- end }}
{{- if and (not $v.tls.enabled) (or $t.serverName $t.caSecret.name $t.clientCertSecretName $t.insecureSkipVerify) }}
{{- fail (printf "%s.tlsConfig is set but tls.enabled is false: the proxy serves plain HTTP" $key) }}
{{- end }}
{{- if and $v.tls.enabled $cm.enabled $t.serverName (not $t.insecureSkipVerify) }}
{{- $names := include "wep.dnsNames" $ | fromJsonArray }}
{{- if not (has $t.serverName $names) }}
{{- fail (printf "%s.tlsConfig.serverName %q is not a name in the proxy's certificate %v: scrapes would fail verification; add it to tls.certManager.extraDnsNames" $key $t.serverName $names) }}
{{- end }}
{{- end }}
{{- if $methods }}
{{- $presents := list }}
{{- if and (has "client-cert" $methods) $t.clientCertSecretName }}{{ $presents = append $presents "client-cert" }}{{ end }}
{{- if and (has "basic" $methods) $m.basicAuthSecretName }}{{ $presents = append $presents "basic" }}{{ end }}
{{- if and (has "tokenreview" $methods) (or (eq $kind "ServiceMonitor") $m.authorizationSecret.name) }}{{ $presents = append $presents "tokenreview" }}{{ end }}
{{- if not $presents }}
{{- if and (eq $kind "PodMonitor") (has "tokenreview" $methods) }}
{{- fail "podMonitor with auth.methods tokenreview: a PodMonitor cannot send Prometheus' own service-account token (PodMetricsEndpoint has no bearerTokenFile); use serviceMonitor, set podMonitor.authorizationSecret.name to a Secret holding a token, or list client-cert and set podMonitor.tlsConfig.clientCertSecretName" }}
{{- end }}
{{- fail (printf "%s.enabled: the %s presents no credential that auth.methods %v accepts; set %s.tlsConfig.clientCertSecretName (client-cert), %s.basicAuthSecretName (basic) or %s.authorizationSecret.name (tokenreview)" $key $kind $methods $key $key $key) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- with $v.exporter }}
{{- if and .tls.ca.secretName .tls.ca.configMapName }}
{{- fail "exporter.tls.ca: set secretName or configMapName, not both" }}
{{- end }}
{{- $ca := or .tls.ca.secretName .tls.ca.configMapName }}
{{- if eq .scheme "https" }}
{{- if and (not $ca) (not .tls.insecureSkipVerify) }}
{{- fail "exporter.scheme https needs exporter.tls.ca.secretName or exporter.tls.ca.configMapName (PROXY_EXPORTER_CA_FILE, the only CA trusted), or exporter.tls.insecureSkipVerify=true" }}
{{- end }}
{{- else if or $ca .tls.serverName .tls.insecureSkipVerify .tls.clientCertSecretName }}
{{- fail "exporter.tls is set but exporter.scheme is http: set exporter.scheme=https for an exporter with tls_server_config" }}
{{- end }}
{{- if ne (not .basicAuth.username) (not .basicAuth.passwordSecretName) }}
{{- fail "exporter.basicAuth needs both username and passwordSecretName (PROXY_EXPORTER_BASIC_AUTH_USERNAME and _PASSWORD_FILE)" }}
{{- end }}
{{- end }}
{{- if and $v.networkPolicy.enabled (not $v.networkPolicy.from) }}
{{- fail "networkPolicy.enabled with an empty networkPolicy.from would admit no scraper at all" }}
{{- end }}
{{- end }}
