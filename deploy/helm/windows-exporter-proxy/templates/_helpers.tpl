{{/* Chart name, overridable. */}}
{{- define "wep.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name used for every object: the release name when it already contains the chart name. */}}
{{- define "wep.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Selector labels: stable for the life of the DaemonSet (spec.selector is immutable). */}}
{{- define "wep.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wep.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels on every object. No helm.sh/chart or managed-by label: deploy/kubernetes/base is this
chart's output applied by kustomize, where those would be false.
*/}}
{{- define "wep.labels" -}}
{{ include "wep.standardLabels" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The labels the chart sets itself; podLabels and commonLabels may not set them again. */}}
{{- define "wep.standardLabels" -}}
{{ include "wep.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: metrics
app.kubernetes.io/part-of: windows-exporter-proxy
{{- end }}

{{- define "wep.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "wep.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Value of the job label on scraped series. */}}
{{- define "wep.job" -}}
{{- default (include "wep.fullname" .) .Values.jobLabel }}
{{- end }}

{{/*
Relabelings shared by ServiceMonitor and PodMonitor: instance and node are the node name, not the
pod IP, so series keep their identity across pod restarts and match node-level dashboards.
metrics_path (the kubelet ServiceMonitor's convention) keeps the two endpoints of one pod apart:
/metrics (windows_exporter) and /proxy/metrics (the proxy), each with its own `up`.
*/}}
{{/*
The monitors' endpoints as JSON [{path, interval, scrapeTimeout}]: /metrics and /proxy/metrics on
the monitor's own interval and timeout, and with collectors.slow /metrics/slow on slowInterval
and slowScrapeTimeout. Called with (dict "root" $ "monitor" .Values.serviceMonitor).
*/}}
{{- define "wep.monitorEndpoints" -}}
{{- $m := .monitor }}
{{- $out := list }}
{{- range $path := list "/metrics" "/proxy/metrics" }}
{{- $out = append $out (dict "path" $path "interval" $m.interval "scrapeTimeout" $m.scrapeTimeout) }}
{{- end }}
{{- if (.root.Values.collectors | default dict).slow }}
{{- $out = append $out (dict "path" "/metrics/slow" "interval" $m.slowInterval "scrapeTimeout" $m.slowScrapeTimeout) }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{- define "wep.relabelings" -}}
- action: replace
  sourceLabels: [__meta_kubernetes_pod_node_name]
  targetLabel: instance
- action: replace
  sourceLabels: [__meta_kubernetes_pod_node_name]
  targetLabel: node
- action: replace
  targetLabel: job
  replacement: {{ include "wep.job" . }}
- action: replace
  sourceLabels: [__metrics_path__]
  targetLabel: metrics_path
{{- end }}

{{/*
A value as the binary expects it in an environment variable. Helm reads YAML numbers as floats,
and a float prints as "1e+06"; whole numbers are printed as integers instead.
*/}}
{{- define "wep.envValue" -}}
{{- if and (kindIs "float64" .) (eq (floor .) .) }}
{{- int64 . }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{/*
PROXY_PORT from proxy.port: one port (9182) or an ordered list ([19100, 19182, 9182] -> "19100,19182,9182").
*/}}
{{- define "wep.exporterPorts" -}}
{{- if kindIs "slice" . }}
{{- $ports := list }}
{{- range . }}{{ $ports = append $ports (include "wep.envValue" .) }}{{ end }}
{{- join "," $ports }}
{{- else }}
{{- include "wep.envValue" . }}
{{- end }}
{{- end }}
