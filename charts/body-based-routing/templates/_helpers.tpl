{{- define "bbr.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: body-based-routing
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "bbr.selectorLabels" -}}
app: {{ .Values.bbr.name }}
{{- end -}}

{{- define "bbr.image" -}}
{{- $image := .Values.bbr.image -}}
{{- printf "%s/%s:%s" ($image.hub | trimSuffix "/") $image.name ($image.tag | default .Chart.AppVersion | toString) -}}
{{- end -}}

{{- define "bbr.providerServed" -}}
{{- $mode := .Values.provider.policies | default "auto" -}}
{{- $name := .Values.provider.name | default "none" | lower -}}
{{- if eq $mode "always" -}}true
{{- else if eq $mode "auto" -}}
{{- if and (eq $name "gke") (.Capabilities.APIVersions.Has "networking.gke.io/v1/GCPRoutingExtension") -}}true{{- end -}}
{{- if and (eq $name "istio") (.Capabilities.APIVersions.Has "networking.istio.io/v1alpha3/EnvoyFilter") -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{- define "bbr.validate" -}}
{{- if not (has (.Values.provider.name | default "none" | lower) (list "none" "gke" "istio")) -}}
{{- fail (printf "provider.name: %q is not supported: use none, gke or istio" (toString .Values.provider.name)) -}}
{{- end -}}
{{- if not (has (.Values.provider.policies | default "auto") (list "auto" "always" "never")) -}}
{{- fail (printf "provider.policies: %q is not supported: use auto, always or never" (toString .Values.provider.policies)) -}}
{{- end -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" (toString .Values.bbr.name)) -}}
{{- fail (printf "bbr.name: %q is not a valid Service name (lowercase letters, digits and '-')" (toString .Values.bbr.name)) -}}
{{- end -}}
{{- if and .Values.bbr.tls.enabled (not .Values.bbr.tls.secretName) -}}
{{- fail "bbr.tls.secretName: required when bbr.tls.enabled is true (a kubernetes.io/tls Secret with tls.crt and tls.key)" -}}
{{- end -}}
{{- range $name, $n := dict "port" .Values.bbr.port "healthCheckPort" .Values.bbr.healthCheckPort "metricsPort" .Values.bbr.metricsPort -}}
{{- if or (lt ($n | int) 1) (gt ($n | int) 65535) -}}
{{- fail (printf "bbr.%s: %v is not a port (1..65535)" $name $n) -}}
{{- end -}}
{{- end -}}
{{- end -}}
