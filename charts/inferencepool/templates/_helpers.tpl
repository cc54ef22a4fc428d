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

{{/*
The EPP image: the v1.5 chart's registry/repository, or the v1.0 chart's hub/name (never both).
Defaults: ghcr.io / infergate/infergate, the chart's appVersion.
*/}}
{{- define "inferencepool.image" -}}
{{- $image := .Values.inferenceExtension.image -}}
{{- $tag := $image.tag | default .Chart.AppVersion | toString -}}
{{- if or $image.hub $image.name -}}
{{- printf "%s/%s:%s" ($image.hub | default "ghcr.io/infergate" | trimSuffix "/") ($image.name | default "infergate") $tag -}}
{{- else -}}
{{- printf "%s/%s:%s" ($image.registry | default "ghcr.io" | trimSuffix "/") ($image.repository | default "infergate/infergate") $tag -}}
{{- end -}}
{{- end -}}

{{/* Leader election (--ha-enable-leader-election): enableLeaderElection when set, else on
when replicas > 1 (the v1.5 chart); false runs every replica on its own. */}}
{{- define "inferencepool.leaderElection" -}}
{{- $ext := .Values.inferenceExtension -}}
{{- if kindIs "bool" $ext.enableLeaderElection -}}
{{- if $ext.enableLeaderElection -}}true{{- end -}}
{{- else if gt ($ext.replicas | int) 1 -}}true
{{- end -}}
{{- end -}}

{{/* Pick sharing between replicas that all serve: the flags the chart passes ({flag: value}),
empty when off. The peers: the EPP's own pods, found by their labels in the EPP's pod watch. */}}
{{- define "inferencepool.pickSharingFlags" -}}
{{- $sharing := .Values.inferenceExtension.pickSharing | default dict -}}
{{- if $sharing.enabled -}}
{{- $selector := list -}}
{{- range $key, $value := include "inferencepool.selectorLabels" . | fromYaml -}}
{{- $selector = append $selector (printf "%s=%s" $key $value) -}}
{{- end -}}
{{- dict "pick-sharing-port" (toString ($sharing.port | default 9004 | int)) "pick-sharing-peer-pods" (join "," $selector) | toJson -}}
{{- else -}}
{{- dict | toJson -}}
{{- end -}}
{{- end -}}

{{/* The metricsDataSource keys given, as EPP flags: {flag: value}. */}}
{{- define "inferencepool.metricsFlags" -}}
{{- $source := .Values.inferenceExtension.metricsDataSource | default dict -}}
{{- $out := dict -}}
{{- if $source.scheme -}}{{- $_ := set $out "model-server-metrics-scheme" (toString $source.scheme) -}}{{- end -}}
{{- if $source.path -}}{{- $_ := set $out "model-server-metrics-path" (toString $source.path) -}}{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* inferenceExtension.flags as a list of {name, value, path}: the v1.0 list of {name, value}
or the v1.5 map {name: value} (in name order). */}}
{{- define "inferencepool.flagList" -}}
{{- $flags := .Values.inferenceExtension.flags -}}
{{- $out := list -}}
{{- if kindIs "map" $flags -}}
{{- range $name := keys $flags | sortAlpha -}}
{{- $out = append $out (dict "name" $name "value" (get $flags $name) "path" (printf "inferenceExtension.flags.%s" $name)) -}}
{{- end -}}
{{- else if kindIs "slice" $flags -}}
{{- range $i, $flag := $flags -}}
{{- if not (kindIs "map" $flag) -}}
{{- fail (printf "inferenceExtension.flags[%d]: must be an object {name, value} (or make flags a map {name: value}, as the v1.5 chart)" $i) -}}
{{- end -}}
{{- $out = append $out (dict "name" ($flag.name | default "") "value" $flag.value "path" (printf "inferenceExtension.flags[%d]" $i)) -}}
{{- end -}}
{{- else if not (kindIs "invalid" $flags) -}}
{{- fail "inferenceExtension.flags: must be a map {name: value} (v1.5 chart) or a list of {name, value} (v1.0 chart)" -}}
{{- end -}}
{{- toJson $out -}}
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
v refresh-metrics-interval refresh-prometheus-metrics-interval metrics-staleness-threshold flow-control-max-queued flow-control-max-wait flow-control-placement error-body seed total-queued-requests-metric kv-cache-usage-percentage-metric lora-info-metric model-server-metrics-port model-server-metrics-path model-server-metrics-scheme zap-encoder ha-lease-duration ha-renew-deadline ha-retry-period sd-max-inflight-per-endpoint sd-max-pending-prefill-tokens sd-sheddable-max-inflight-per-endpoint sd-sheddable-max-pending-prefill-tokens sd-sheddable-max-prefill-busy-fraction sd-sheddable-ttft-objective sd-sheddable-itl-objective pick-sharing-port pick-sharing-peers pick-sharing-peer-pods
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
{{- $metricsFlags := include "inferencepool.metricsFlags" . | fromJson -}}
{{- $chartFlags := dict "pool-name" "the release name" "pool-namespace" "the release namespace" "pool-group" "inferencePool.apiVersion" "grpc-port" "inferenceExtension.extProcPort" "grpc-health-port" "inferenceExtension.healthCheckPort" "metrics-port" "inferenceExtension.metricsPort" "host" "inferenceExtension.bindAddress" "config-file" "inferenceExtension.pluginsConfigFile" "config-text" "inferenceExtension.pluginsCustomConfig" "model-server-protocol" "inferencePool.modelServerType" "secure-serving" "inferenceExtension.tls.enabled" "no-secure-serving" "inferenceExtension.tls.enabled" "cert-path" "inferenceExtension.tls.secretName" "kubeconfig" "the pod's service account" "static-file" "the Kubernetes API" "ha-enable-leader-election" "inferenceExtension.replicas > 1 or inferenceExtension.enableLeaderElection" -}}
{{- range $name, $_ := include "inferencepool.pickSharingFlags" . | fromJson -}}
{{- $_ := set $chartFlags $name "inferenceExtension.pickSharing" -}}
{{- $_ := set $chartFlags "pick-sharing-peers" "inferenceExtension.pickSharing (the peers are the EPP pods)" -}}
{{- end -}}
{{- $group := include "inferencepool.group" . -}}
{{- range $flag := include "inferencepool.flagList" . | fromJsonArray -}}
{{- $i := $flag.path -}}
{{- $name := include "inferencepool.flagName" ($flag.name | default "") -}}
{{- $value := "" -}}
{{- if not (kindIs "invalid" $flag.value) -}}{{- $value = toString $flag.value -}}{{- end -}}
{{- if eq $name "" -}}
{{- fail (printf "%s.name: required" $i) -}}
{{- else if has $name $dropped -}}
{{- /* upstream's Go logging/pprof flag: no infergate equivalent, dropped */ -}}
{{- else if and (eq $name "pool-group") (eq $value $group) -}}
{{- /* upstream v1.0.0 needed this for preview pools; the chart passes it already */ -}}
{{- else if hasKey $metricsFlags $name -}}
{{- fail (printf "%s: --%s contradicts inferenceExtension.metricsDataSource, which sets it too: set only one of them" $i $name) -}}
{{- else if hasKey $chartFlags $name -}}
{{- fail (printf "%s: --%s is set by the chart from %s; set that instead" $i $name (get $chartFlags $name)) -}}
{{- else if has $name $boolFlags -}}
{{- if or (eq $value "") (eq $value "true") }}
- {{ printf "--%s" $name | quote }}
{{- else if eq $value "false" }}
- {{ printf "--no-%s" $name | quote }}
{{- else -}}
{{- fail (printf "%s.value: --%s takes true or false, not %q" $i $name $value) -}}
{{- end -}}
{{- else if has $name $valueFlags -}}
{{- if eq $value "" -}}
{{- fail (printf "%s.value: --%s needs a value" $i $name) -}}
{{- end }}
- {{ printf "--%s=%s" $name $value | quote }}
{{- else -}}
{{- fail (printf "%s.name: infergate epp has no flag --%s (accepted: %s %s)" $i $name (include "inferencepool.valueFlags" $) (include "inferencepool.boolFlags" $)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The dropped upstream flags actually given, for the notes. */}}
{{- define "inferencepool.droppedGiven" -}}
{{- $dropped := splitList " " (include "inferencepool.droppedFlags" .) -}}
{{- $out := list -}}
{{- range include "inferencepool.flagList" . | fromJsonArray -}}
{{- $name := include "inferencepool.flagName" (.name | default "") -}}
{{- if has $name $dropped -}}{{- $out = append $out (printf "--%s" $name) -}}{{- end -}}
{{- end -}}
{{- join ", " $out -}}
{{- end -}}

{{/* Every check on the values; included by every template so that any render fails early. */}}
{{- define "inferencepool.validate" -}}
{{- $pool := .Values.inferencePool -}}
{{- $ext := .Values.inferenceExtension -}}
{{- if and ($ext.pickSharing | default dict).enabled (include "inferencepool.leaderElection" .) -}}
{{- fail "inferenceExtension.pickSharing.enabled: pick sharing is between replicas that all serve, and leader election (on with replicas > 1 unless enableLeaderElection: false) lets one serve: set inferenceExtension.enableLeaderElection: false" -}}
{{- end -}}
{{- $versions := list "inference.networking.k8s.io/v1" "inference.networking.x-k8s.io/v1alpha2" -}}
{{- if not (has $pool.apiVersion $versions) -}}
{{- fail (printf "inferencePool.apiVersion: %q is not supported: use inference.networking.k8s.io/v1 (GA) or inference.networking.x-k8s.io/v1alpha2 (preview)" (toString $pool.apiVersion)) -}}
{{- end -}}
{{- if not (and $pool.modelServers (kindIs "map" $pool.modelServers.matchLabels) $pool.modelServers.matchLabels) -}}
{{- fail "inferencePool.modelServers.matchLabels: required: the labels of the model-server pods, e.g. --set inferencePool.modelServers.matchLabels.app=vllm-llama3-8b-instruct" -}}
{{- end -}}
{{- if not (and (hasKey $pool "targetPortNumber") (not (kindIs "invalid" $pool.targetPortNumber))) -}}
{{- $most := ternary 1 8 (eq (include "inferencepool.preview" .) "true") -}}
{{- if not (and (kindIs "slice" $pool.targetPorts) $pool.targetPorts (le (len $pool.targetPorts) $most)) -}}
{{- fail (ternary "inferencePool.targetPorts: exactly one port for a preview pool (its targetPortNumber), e.g. [{number: 8000}]" "inferencePool.targetPorts: 1 to 8 ports (GIE v1.1+: each port of a pod is an endpoint, e.g. data-parallel ranks), e.g. [{number: 8000}]" (eq $most 1)) -}}
{{- end -}}
{{- range $i, $p := $pool.targetPorts -}}
{{- if or (lt ($p.number | int) 1) (gt ($p.number | int) 65535) -}}
{{- fail (printf "inferencePool.targetPorts[%d].number: %v is not a port (1..65535)" $i $p.number) -}}
{{- end -}}
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
{{- if and (or $ext.image.hub $ext.image.name) (or $ext.image.registry $ext.image.repository) -}}
{{- fail "inferenceExtension.image: hub/name (the v1.0 chart's form) and registry/repository (the v1.5 chart's) are both set: set only one form" -}}
{{- end -}}
{{- $source := $ext.metricsDataSource | default dict -}}
{{- if and $source.scheme (not (has $source.scheme (list "http" "https"))) -}}
{{- fail (printf "inferenceExtension.metricsDataSource.scheme: %q is not supported: use http or https" (toString $source.scheme)) -}}
{{- end -}}
{{- if and $source.path (not (hasPrefix "/" (toString $source.path))) -}}
{{- fail (printf "inferenceExtension.metricsDataSource.path: %q must start with /" (toString $source.path)) -}}
{{- end -}}
{{- if and (eq (toString $source.scheme) "https") (kindIs "bool" $source.insecureSkipVerify) (not $source.insecureSkipVerify) -}}
{{- fail "inferenceExtension.metricsDataSource.insecureSkipVerify: false is not supported: infergate's EPP does not verify the model servers' certificates on https scrapes (as upstream's default)" -}}
{{- end -}}
{{- if not (has ($pool.modelServerProtocol | default "http") (list "http")) -}}
{{- fail (printf "inferencePool.modelServerProtocol: %q is not supported: infergate's EPP speaks OpenAI-compatible HTTP to the model servers (http)" (toString $pool.modelServerProtocol)) -}}
{{- end -}}
{{- if not (has ($pool.parser | default "") (list "" "openai-parser")) -}}
{{- fail (printf "inferencePool.parser: %q is not supported: infergate's EPP parses OpenAI-compatible bodies (leave it empty or openai-parser)" (toString $pool.parser)) -}}
{{- end -}}
{{- if dig "sidecar" "enabled" false $ext -}}
{{- fail "inferenceExtension.sidecar.enabled: an Envoy sidecar next to the EPP is what charts/standalone installs (helm install NAME charts/standalone); this chart's EPP serves a gateway" -}}
{{- end -}}
{{- if dig "latencyPredictor" "enabled" false $ext -}}
{{- fail "inferenceExtension.latencyPredictor.enabled: upstream's latency-predictor sidecars are not supported; infergate's EPP predicts latency in process: pluginsConfigFile with the predicted-latency preset (see docs/epp.md)" -}}
{{- end -}}
{{- if dig "tracing" "enabled" false $ext -}}
{{- fail "inferenceExtension.tracing.enabled: OpenTelemetry tracing is not supported by infergate's EPP; leave it false" -}}
{{- end -}}
{{- $objectiveVersions := list "inference.networking.x-k8s.io/v1alpha2" "llm-d.ai/v1alpha2" -}}
{{- $seen := dict -}}
{{- range $i, $objective := .Values.inferenceObjectives | default list -}}
{{- if not (and (kindIs "map" $objective) $objective.name) -}}
{{- fail (printf "inferenceObjectives[%d].name: required (each entry is {name, priority})" $i) -}}
{{- end -}}
{{- if hasKey $seen (toString $objective.name) -}}
{{- fail (printf "inferenceObjectives[%d].name: %q is listed twice" $i (toString $objective.name)) -}}
{{- end -}}
{{- $_ := set $seen (toString $objective.name) true -}}
{{- if and (hasKey $objective "priority") (not (kindIs "invalid" $objective.priority)) (not (or (kindIs "int" $objective.priority) (kindIs "int64" $objective.priority) (kindIs "float64" $objective.priority))) -}}
{{- fail (printf "inferenceObjectives[%d].priority: must be an integer" $i) -}}
{{- end -}}
{{- if not (has ($objective.apiVersion | default "inference.networking.x-k8s.io/v1alpha2") $objectiveVersions) -}}
{{- fail (printf "inferenceObjectives[%d].apiVersion: %q is not supported: use inference.networking.x-k8s.io/v1alpha2 (GIE) or llm-d.ai/v1alpha2 (llm-d router)" $i (toString $objective.apiVersion)) -}}
{{- end -}}
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
