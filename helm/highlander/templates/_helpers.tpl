{{- define "highlander.fullname" -}}
{{- printf "%s" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "highlander.selectorLabels" -}}
app.kubernetes.io/name: highlander
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "highlander.labels" -}}
{{ include "highlander.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "highlander.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "highlander.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "highlander.secretName" -}}
{{- printf "%s-secrets" (include "highlander.fullname" .) -}}
{{- end -}}
