{{/*
Names. The pool is named after the release (as upstream); the EPP objects after the release
truncated to 40 characters plus "-epp". Every object is namespaced, so two releases with the
same name in different namespaces never share an object.
*/}}
{{- define "inferencepool.poolName" -}}
{{- .Release.Name -}}
{{- end -}}

{{- define "inferencepool.eppName" -}}
{{- printf "%s-epp" (.Release.Name | lower | trim | trunc 40 | trimSuffix "-") -}}
{{- end -}}

{{- define "inferencepool.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: inferencepool
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "inferencepool.selectorLabels" -}}
inferencepool: {{ include "inferencepool.eppName" . }}
{{- end -}}

{{- define "inferencepool.preview" -}}
{{- if eq .Values.inferencePool.apiVersion "inference.networking.x-k8s.io/v1alpha2" -}}true{{- end -}}
{{- end -}}

{{- define "inferencepool.group" -}}
{{- if include "inferencepool.preview" . -}}inference.networking.x-k8s.io{{- else -}}inference.networking.k8s.io{{- end -}}
{{- end -}}

{{/* The model-server port: targetPortNumber (older form) when set, else targetPorts[0]. */}}
{{- define "inferencepool.targetPort" -}}
{{- $pool := .Values.inferencePool -}}
{{- if and (hasKey $pool "targetPortNumber") (not (kindIs "invalid" $pool.targetPortNumber)) -}}
{{- $pool.targetPortNumber | int -}}
{{- else -}}
{{- (index $pool.targetPorts 0).number | int -}}
{{- end -}}
{{- end -}}

{{- define "inferencepool.image" -}}
{{- $image := .Values.inferenceExtension.image -}}
{{- printf "%s/%s:%s" ($image.hub | trimSuffix "/") $image.name ($image.tag | default .Chart.AppVersion | toString) -}}
{{- end -}}

{{/*
Does the cluster serve the provider's API? provider.policies: always / never / auto (ask the
cluster's discovery; `helm template` without a cluster knows only what --api-versions says).
*/}}
{{- define "inferencepool.providerServed" -}}
{{- $mode := .Values.provider.policies | default "auto" -}}
{{- $name := .Values.provider.name | default "none" | lower -}}
{{- if eq $mode "always" -}}true
{{- else if eq $mode "auto" -}}
{{- if and (eq $name "gke") (.Capabilities.APIVersions.Has "networking.gke.io/v1/HealthCheckPolicy") -}}true{{- end -}}
{{- if and (eq $name "istio") (.Capabilities.APIVersions.Has "networking.istio.io/v1beta1/DestinationRule") -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/* Does the cluster look like GKE while provider.name says otherwise? */}}
{{- define "inferencepool.looksLikeGKE" -}}
{{- if or (contains "-gke." .Capabilities.KubeVersion.Version) (.Capabilities.APIVersions.Has "networking.gke.io/v1") -}}true{{- end -}}
{{- end -}}

{{/*
Flags of `infergate epp` that inferenceExtension.flags may set. The chart sets the others
itself (chartFlags: flag -> the value that sets it). Upstream's Go logging flags other than
zap-encoder have no infergate equivalent and are dropped (listed in the install notes).
*/}}
{{- define "inferencepool.valueFlags" -}}
v refresh-metrics-interval refresh-prometheus-metrics-interval metrics-staleness-threshold flow-control-max-queued flow-control-max-wait error-body seed total-queued-requests-metric kv-cache-usage-percentage-metric lora-info-metric model-server-metrics-port model-server-metrics-path model-server-metrics-scheme zap-encoder
{{- end -}}
{{- define "inferencepool.boolFlags" -}}
flow-control health-checking enable-pprof
{{- end -}}
{{- define "inferencepool.droppedFlags" -}}
zap-log-level zap-devel zap-stacktrace-level zap-time-encoding
{{- end -}}

{{- define "inferencepool.flagName" -}}
{{- . | toString | trim | trimPrefix "-" | trimPrefix "-" -}}
{{- end -}}

{{- define "inferencepool.flagArgs" -}}
{{- $valueFlags := splitList " " (include "inferencepool.valueFlags" .) -}}
{{- $boolFlags := splitList " " (include "inferencepool.boolFlags" .) -}}
{{- $dropped := splitList " " (include "inferencepool.droppedFlags" .) -}}
{{- $chartFlags := dict "pool-name" "the release name" "pool-namespace" "the release namespace" "pool-group" "inferencePool.apiVersion" "grpc-port" "inferenceExtension.extProcPort" "grpc-health-port" "inferenceExtension.healthCheckPort" "metrics-port" "inferenceExtension.metricsPort" "host" "inferenceExtension.bindAddress" "config-file" "inferenceExtension.pluginsConfigFile" "config-text" "inferenceExtension.pluginsCustomConfig" "model-server-protocol" "inferencePool.modelServerType" "secure-serving" "inferenceExtension.tls.enabled" "no-secure-serving" "inferenceExtension.tls.enabled" "cert-path" "inferenceExtension.tls.secretName" "kubeconfig" "the pod's service account" "static-file" "the Kubernetes API" "ha-enable-leader-election" "inferenceExtension.enableLeaderElection" -}}
{{- $group := include "inferencepool.group" . -}}
{{- range $i, $flag := .Values.inferenceExtension.flags -}}
{{- if not (kindIs "map" $flag) -}}
{{- fail (printf "inferenceExtension.flags[%d]: must be an object {name, value}" $i) -}}
{{- end -}}
{{- $name := include "inferencepool.flagName" ($flag.name | default "") -}}
{{- $value := "" -}}
{{- if not (kindIs "invalid" $flag.value) -}}{{- $value = toString $flag.value -}}{{- end -}}
{{- if eq $name "" -}}
{{- fail (printf "inferenceExtension.flags[%d].name: required" $i) -}}
{{- else if has $name $dropped -}}
{{- /* upstream's Go logging/pprof flag: no infergate equivalent, dropped */ -}}
{{- else if and (eq $name "pool-group") (eq $value $group) -}}
{{- /* upstream v1.0.0 needed this for preview pools; the chart passes it already */ -}}
{{- else if hasKey $chartFlags $name -}}
{{- fail (printf "inferenceExtension.flags[%d]: --%s is set by the chart from %s; set that instead" $i $name (get $chartFlags $name)) -}}
{{- else if has $name $boolFlags -}}
{{- if or (eq $value "") (eq $value "true") }}
- {{ printf "--%s" $name | quote }}
{{- else if eq $value "false" }}
- {{ printf "--no-%s" $name | quote }}
{{- else -}}
{{- fail (printf "inferenceExtension.flags[%d].value: --%s takes true or false, not %q" $i $name $value) -}}
{{- end -}}
{{- else if has $name $valueFlags -}}
{{- if eq $value "" -}}
{{- fail (printf "inferenceExtension.flags[%d].value: --%s needs a value" $i $name) -}}
{{- end }}
- {{ printf "--%s=%s" $name $value | quote }}
{{- else -}}
{{- fail (printf "inferenceExtension.flags[%d].name: infergate epp has no flag --%s (accepted: %s %s)" $i $name (include "inferencepool.valueFlags" $) (include "inferencepool.boolFlags" $)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The dropped upstream flags actually given, for the notes. */}}
{{- define "inferencepool.droppedGiven" -}}
{{- $dropped := splitList " " (include "inferencepool.droppedFlags" .) -}}
{{- $out := list -}}
{{- range .Values.inferenceExtension.flags -}}
{{- if kindIs "map" . -}}
{{- $name := include "inferencepool.flagName" (.name | default "") -}}
{{- if has $name $dropped -}}{{- $out = append $out (printf "--%s" $name) -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- join ", " $out -}}
{{- end -}}

{{/* Every check on the values; included by every template so that any render fails early. */}}
{{- define "inferencepool.validate" -}}
{{- $pool := .Values.inferencePool -}}
{{- $ext := .Values.inferenceExtension -}}
{{- $versions := list "inference.networking.k8s.io/v1" "inference.networking.x-k8s.io/v1alpha2" -}}
{{- if not (has $pool.apiVersion $versions) -}}
{{- fail (printf "inferencePool.apiVersion: %q is not supported: use inference.networking.k8s.io/v1 (GA) or inference.networking.x-k8s.io/v1alpha2 (preview)" (toString $pool.apiVersion)) -}}
{{- end -}}
{{- if not (and $pool.modelServers (kindIs "map" $pool.modelServers.matchLabels) $pool.modelServers.matchLabels) -}}
{{- fail "inferencePool.modelServers.matchLabels: required: the labels of the model-server pods, e.g. --set inferencePool.modelServers.matchLabels.app=vllm-llama3-8b-instruct" -}}
{{- end -}}
{{- if not (and (hasKey $pool "targetPortNumber") (not (kindIs "invalid" $pool.targetPortNumber))) -}}
{{- if not (and (kindIs "slice" $pool.targetPorts) (eq (len $pool.targetPorts) 1)) -}}
{{- fail "inferencePool.targetPorts: exactly one port is supported (the v1 CRD allows one), e.g. [{number: 8000}]" -}}
{{- end -}}
{{- end -}}
{{- $port := include "inferencepool.targetPort" . | int -}}
{{- if or (lt $port 1) (gt $port 65535) -}}
{{- fail (printf "inferencePool.targetPorts[0].number: %d is not a port (1..65535)" $port) -}}
{{- end -}}
{{- $types := list "vllm" "sglang" "triton-tensorrt-llm" -}}
{{- if not (has $pool.modelServerType $types) -}}
{{- fail (printf "inferencePool.modelServerType: %q is not supported: use vllm, sglang or triton-tensorrt-llm" (toString $pool.modelServerType)) -}}
{{- end -}}
{{- $providers := list "none" "gke" "istio" -}}
{{- if not (has (.Values.provider.name | default "none" | lower) $providers) -}}
{{- fail (printf "provider.name: %q is not supported: use none, gke or istio" (toString .Values.provider.name)) -}}
{{- end -}}
{{- if not (has (.Values.provider.policies | default "auto") (list "auto" "always" "never")) -}}
{{- fail (printf "provider.policies: %q is not supported: use auto, always or never" (toString .Values.provider.policies)) -}}
{{- end -}}
{{- if not (has $ext.failureMode (list "FailOpen" "FailClose")) -}}
{{- fail (printf "inferenceExtension.failureMode: %q is not supported: use FailClose or FailOpen" (toString $ext.failureMode)) -}}
{{- end -}}
{{- if $ext.enableLeaderElection -}}
{{- fail "inferenceExtension.enableLeaderElection: infergate's EPP has no leader election; every replica serves on its own (set inferenceExtension.replicas instead)" -}}
{{- end -}}
{{- if and $ext.tls.enabled (not $ext.tls.secretName) -}}
{{- fail "inferenceExtension.tls.secretName: required when inferenceExtension.tls.enabled is true (a kubernetes.io/tls Secret with tls.crt and tls.key)" -}}
{{- end -}}
{{- if and (ne $ext.pluginsConfigFile "default-plugins.yaml") (not (hasKey ($ext.pluginsCustomConfig | default dict) $ext.pluginsConfigFile)) -}}
{{- fail (printf "inferenceExtension.pluginsConfigFile: %q is neither default-plugins.yaml nor a key of inferenceExtension.pluginsCustomConfig" $ext.pluginsConfigFile) -}}
{{- end -}}
{{- range $name, $n := dict "extProcPort" $ext.extProcPort "healthCheckPort" $ext.healthCheckPort "metricsPort" $ext.metricsPort -}}
{{- if or (lt ($n | int) 1) (gt ($n | int) 65535) -}}
{{- fail (printf "inferenceExtension.%s: %v is not a port (1..65535)" $name $n) -}}
{{- end -}}
{{- end -}}
{{- $_ := include "inferencepool.flagArgs" . -}}
{{- end -}}
