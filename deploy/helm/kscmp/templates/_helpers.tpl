{{/* The image of every container: repository:tag, the tag defaulting to appVersion. */}}
{{- define "kscmp.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The kubelet's seccomp directory on the node and in the agent's containers. */}}
{{- define "kscmp.seccompDir" -}}
{{ trimSuffix "/" .Values.kubeletRoot }}/seccomp
{{- end -}}
