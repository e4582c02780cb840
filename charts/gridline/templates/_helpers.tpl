{{/* Names are cut at 63 characters: the limit of a label value and of most object names. */}}
{{- define "gridline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name: `gridline` when the release is called gridline (or contains the
chart's name), otherwise `<release>-gridline`.
*/}}
{{- define "gridline.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "gridline.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "gridline.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "gridline.operatorName" -}}
{{- printf "%s-operator" (include "gridline.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gridline.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gridline.labels" -}}
helm.sh/chart: {{ include "gridline.chart" . }}
{{ include "gridline.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: gridline
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels never change between upgrades: a Deployment's selector is immutable. */}}
{{- define "gridline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gridline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "gridline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gridline.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is needed when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gridline.operatorImage" -}}
{{- printf "%s:%s" .Values.image.operator.repository (default .Chart.AppVersion .Values.image.operator.tag) }}
{{- end }}

{{- define "gridline.dataplaneImage" -}}
{{- printf "%s:%s" .Values.image.dataplane.repository (default .Chart.AppVersion .Values.image.dataplane.tag) }}
{{- end }}

{{/* Refuse settings that would install something that cannot work. */}}
{{- define "gridline.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled: replicas without a leader would all reconcile the same objects" }}
{{- end }}
{{- if ne (len .Values.watchNamespaces) (len (uniq .Values.watchNamespaces)) }}
{{- fail "watchNamespaces lists a namespace twice" }}
{{- end }}
{{- end }}
