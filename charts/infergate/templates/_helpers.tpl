{{/*
Names. Namespaced objects are named after the release (truncated to 40 characters); the
cluster-scoped RBAC objects also carry the namespace, so two releases of the same name in
different namespaces never share an object.
*/}}
{{- define "infergate.fullname" -}}
{{- .Release.Name | lower | trim | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "infergate.controllerName" -}}
{{- printf "%s-controller" (include "infergate.fullname" .) -}}
{{- end -}}

{{- define "infergate.xdsName" -}}
{{- printf "%s-xds" (include "infergate.fullname" .) -}}
{{- end -}}

{{- define "infergate.clusterRoleName" -}}
{{- printf "%s-%s-controller" (.Release.Namespace | trunc 40 | trimSuffix "-") (include "infergate.fullname" .) -}}
{{- end -}}

{{- define "infergate.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "infergate.controllerName" .) -}}
{{- end -}}

{{- define "infergate.leaseNamespace" -}}
{{- .Values.leaderElection.namespace | default .Release.Namespace -}}
{{- end -}}

{{- define "infergate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: infergate
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "infergate.selectorLabels" -}}
app.kubernetes.io/name: infergate
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "infergate.image" -}}
{{- $image := .Values.image -}}
{{- printf "%s/%s:%s" ($image.hub | trimSuffix "/") $image.name ($image.tag | default .Chart.AppVersion | toString) -}}
{{- end -}}

{{- define "infergate.envoyImage" -}}
{{- .Values.envoy.image | default (include "infergate.image" .) -}}
{{- end -}}

{{/* The ConfigMap of a class's parameters (the chart's), by class name. */}}
{{- define "infergate.parametersName" -}}
{{- printf "%s-%s" (include "infergate.fullname" .root) .class.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* A parameter value as a ConfigMap string: maps and lists as JSON (YAML readers take it). */}}
{{- define "infergate.parameterValue" -}}
{{- if or (kindIs "map" .) (kindIs "slice" .) -}}{{- toJson . -}}{{- else -}}{{- toString . -}}{{- end -}}
{{- end -}}

{{/*
Checks the schema cannot express (values.schema.json has the rest): unique class names, one
of parameters / parametersRef per class.
*/}}
{{- define "infergate.validate" -}}
{{- $seen := dict -}}
{{- range $i, $class := .Values.gatewayClasses -}}
{{- if hasKey $seen $class.name -}}
{{- fail (printf "gatewayClasses[%d].name: %q is already the name of gatewayClasses[%d]" $i $class.name (get $seen $class.name)) -}}
{{- end -}}
{{- $_ := set $seen $class.name $i -}}
{{- if and $class.parameters $class.parametersRef -}}
{{- fail (printf "gatewayClasses[%d]: set parameters (the chart writes the ConfigMap) or parametersRef (an existing ConfigMap), not both" $i) -}}
{{- end -}}
{{- end -}}
{{- end -}}
