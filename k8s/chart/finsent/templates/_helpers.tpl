{{- define "finsent.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "finsent.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "finsent.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ include "finsent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "finsent.selector" -}}
app.kubernetes.io/name: {{ include "finsent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "finsent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "finsent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Where Triton reads the model repository: the image's copy or a gs:// URI. */}}
{{- define "finsent.modelRepository" -}}
{{- if eq .Values.modelRepository.source "gcs" }}
{{- required "modelRepository.gcsUri (gs://bucket/path) is required with source gcs" .Values.modelRepository.gcsUri }}
{{- else if eq .Values.modelRepository.source "baked" }}
{{- .Values.modelRepository.path }}
{{- else }}
{{- fail (printf "modelRepository.source %q: baked or gcs" .Values.modelRepository.source) }}
{{- end }}
{{- end }}

{{/* The GPU type the pods select (gpu.accelerator, or a nodeSelector naming one), refused unless
files/accelerators.yaml lists it as one the image runs on. */}}
{{- define "finsent.accelerator" -}}
{{- $gpus := .Files.Get "files/accelerators.yaml" | fromYaml }}
{{- $named := dict "gpu.accelerator" (.Values.gpu.enabled | ternary .Values.gpu.accelerator "") "nodeSelector's cloud.google.com/gke-accelerator" (get (.Values.nodeSelector | default dict) "cloud.google.com/gke-accelerator") }}
{{- range $value, $type := $named }}
{{- if and $type (not (has $type $gpus.supported)) }}
{{- fail (printf "%s %s is not supported: %s; supported: %s (files/accelerators.yaml)" $value $type (get $gpus.unsupported $type | default "not a GPU type the image is known to run on") (join ", " $gpus.supported)) }}
{{- end }}
{{- end }}
{{- .Values.gpu.accelerator }}
{{- end }}

{{- define "finsent.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "finsent.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: {{ .Values.securityContext.readOnlyRootFilesystem }}
capabilities:
  drop: [ALL]
{{- end }}

{{/* server/health.py in the image, on Triton's HTTP port, for every model; (list . extra-args...). */}}
{{- define "finsent.healthCommand" -}}
{{- $root := index . 0 }}
{{- $cmd := list "python3" $root.Values.probes.healthScript (printf "--url=localhost:%s" (include "finsent.port.http" $root)) }}
{{- range $root.Values.models }}{{ $cmd = append $cmd (printf "--model=%s" .) }}{{ end }}
{{- range (rest .) }}{{ $cmd = append $cmd . }}{{ end }}
{{- toJson $cmd }}
{{- end }}

{{/* A Service's exposure: (list $values "its path in values" "what it exposes"). ClusterIP stays in the cluster; a
LoadBalancer is internal to the VPC unless public: true, and a public one needs source ranges. */}}
{{- define "finsent.exposure.check" -}}
{{- $svc := index . 0 }}{{- $path := index . 1 }}
{{- if not (has $svc.type (list "ClusterIP" "LoadBalancer")) }}
{{- fail (printf "%s.type %q: ClusterIP or LoadBalancer (internal to the VPC unless %s.public: true; docs/SECURITY.md)" $path $svc.type $path) }}
{{- end }}
{{- if and $svc.public (ne $svc.type "LoadBalancer") }}
{{- fail (printf "%s.public: true needs %s.type LoadBalancer" $path $path) }}
{{- end }}
{{- if and $svc.public (not $svc.loadBalancerSourceRanges) }}
{{- fail (printf "%s.public: true opens %s to the internet: set %s.loadBalancerSourceRanges to the CIDRs allowed to connect (--set '%s.loadBalancerSourceRanges={203.0.113.0/24}'), or leave public false for an internal load balancer (docs/SECURITY.md)" $path (index . 2) $path $path) }}
{{- end }}
{{- end }}

{{/* The Service's annotations: values' own, and GKE's internal load balancer unless public. */}}
{{- define "finsent.exposure.annotations" -}}
{{- $svc := index . 0 }}
{{- $annotations := deepCopy ($svc.annotations | default dict) }}
{{- if and (eq $svc.type "LoadBalancer") (not $svc.public) }}
{{- $_ := set $annotations "networking.gke.io/load-balancer-type" "Internal" }}
{{- end }}
{{- with $annotations }}{{ toYaml . }}{{ end }}
{{- end }}
