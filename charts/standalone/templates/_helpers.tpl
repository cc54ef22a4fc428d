{{/* Names: the pool after the release, the rest after the release (40 characters) + "-epp". */}}
{{- define "standalone.poolName" -}}
{{- .Release.Name -}}
{{- end -}}

{{- define "standalone.name" -}}
{{- printf "%s-epp" (.Release.Name | lower | trim | trunc 40 | trimSuffix "-") -}}
{{- end -}}

{{- define "standalone.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: standalone
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "standalone.selectorLabels" -}}
inferencepool: {{ include "standalone.name" . }}
{{- end -}}

{{- define "standalone.image" -}}
{{- $image := .Values.inferenceExtension.image -}}
{{- printf "%s/%s:%s" ($image.registry | default "ghcr.io" | trimSuffix "/") ($image.repository | default "infergate/infergate") ($image.tag | default .Chart.AppVersion | toString) -}}
{{- end -}}

{{/* Flags the chart sets itself: a flag given in inferenceExtension.flags must not be one of them. */}}
{{- define "standalone.chartFlags" -}}
pool-name pool-namespace pool-group grpc-port grpc-health-port metrics-port host config-file config-text model-server-protocol kubeconfig static-file
{{- end -}}

{{/* inferenceExtension.flags (a map {name: value} or a list of {name, value}) as args. */}}
{{- define "standalone.flagArgs" -}}
{{- $flags := .Values.inferenceExtension.flags -}}
{{- $items := list -}}
{{- if kindIs "map" $flags -}}
{{- range $name := keys $flags | sortAlpha -}}{{- $items = append $items (dict "name" $name "value" (get $flags $name) "path" (printf "inferenceExtension.flags.%s" $name)) -}}{{- end -}}
{{- else if kindIs "slice" $flags -}}
{{- range $i, $flag := $flags -}}
{{- if not (and (kindIs "map" $flag) $flag.name) -}}{{- fail (printf "inferenceExtension.flags[%d]: must be an object {name, value}" $i) -}}{{- end -}}
{{- $items = append $items (dict "name" $flag.name "value" $flag.value "path" (printf "inferenceExtension.flags[%d]" $i)) -}}
{{- end -}}
{{- else if not (kindIs "invalid" $flags) -}}
{{- fail "inferenceExtension.flags: must be a map {name: value} or a list of {name, value}" -}}
{{- end -}}
{{- $chartFlags := splitList " " (include "standalone.chartFlags" .) -}}
{{- range $items -}}
{{- $name := .name | toString | trimPrefix "-" | trimPrefix "-" -}}
{{- if has $name $chartFlags -}}
{{- fail (printf "%s: --%s is set by the chart; use the chart's value for it (see docs/charts.md)" .path $name) -}}
{{- end -}}
{{- if or (kindIs "invalid" .value) (eq (toString .value) "true") }}
- {{ printf "--%s" $name | quote }}
{{- else if eq (toString .value) "false" }}
- {{ printf "--no-%s" $name | quote }}
{{- else }}
- {{ printf "--%s=%v" $name .value | quote }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Every check on the values; included by every template so that any render fails early. */}}
{{- define "standalone.validate" -}}
{{- $pool := .Values.inferencePool -}}
{{- $ext := .Values.inferenceExtension -}}
{{- if ne (toString $pool.apiVersion) "inference.networking.k8s.io/v1" -}}
{{- fail (printf "inferencePool.apiVersion: %q is not supported: the standalone chart creates a GA pool (inference.networking.k8s.io/v1)" (toString $pool.apiVersion)) -}}
{{- end -}}
{{- if not (dig "endpointsServer" "createInferencePool" true $ext) -}}
{{- fail "inferenceExtension.endpointsServer.createInferencePool: false is not supported: infergate's EPP serves an InferencePool (it has no pool-less pod selector); keep it true and set inferencePool.modelServers.matchLabels" -}}
{{- end -}}
{{- if not (and $pool.modelServers (kindIs "map" $pool.modelServers.matchLabels) $pool.modelServers.matchLabels) -}}
{{- fail "inferencePool.modelServers.matchLabels: required: the labels of the model-server pods, e.g. --set inferencePool.modelServers.matchLabels.app=vllm-llama3-8b-instruct" -}}
{{- end -}}
{{- if not (and (kindIs "slice" $pool.targetPorts) $pool.targetPorts (le (len $pool.targetPorts) 8)) -}}
{{- fail "inferencePool.targetPorts: 1 to 8 ports, e.g. [{number: 8000}]" -}}
{{- end -}}
{{- if not (has $pool.modelServerType (list "vllm" "sglang" "triton-tensorrt-llm")) -}}
{{- fail (printf "inferencePool.modelServerType: %q is not supported: use vllm, sglang or triton-tensorrt-llm" (toString $pool.modelServerType)) -}}
{{- end -}}
{{- if and (ne $ext.pluginsConfigFile "default-plugins.yaml") (not (hasKey ($ext.pluginsCustomConfig | default dict) $ext.pluginsConfigFile)) -}}
{{- fail (printf "inferenceExtension.pluginsConfigFile: %q is neither default-plugins.yaml nor a key of inferenceExtension.pluginsCustomConfig" $ext.pluginsConfigFile) -}}
{{- end -}}
{{- $ports := dict "extProcPort" $ext.extProcPort "healthCheckPort" $ext.healthCheckPort "metricsPort" $ext.metricsPort "sidecar.proxyPort" $ext.sidecar.proxyPort "sidecar.adminPort" $ext.sidecar.adminPort "sidecar.readyPort" $ext.sidecar.readyPort -}}
{{- $seen := dict -}}
{{- range $name := keys $ports | sortAlpha -}}
{{- $n := get $ports $name | int -}}
{{- if or (lt $n 1) (gt $n 65535) -}}
{{- fail (printf "inferenceExtension.%s: %v is not a port (1..65535)" $name (get $ports $name)) -}}
{{- end -}}
{{- if hasKey $seen (toString $n) -}}
{{- fail (printf "inferenceExtension.%s: port %d is also inferenceExtension.%s (the containers share the pod's network)" $name $n (get $seen (toString $n))) -}}
{{- end -}}
{{- $_ := set $seen (toString $n) $name -}}
{{- end -}}
{{- $_ := include "standalone.flagArgs" . -}}
{{- end -}}
