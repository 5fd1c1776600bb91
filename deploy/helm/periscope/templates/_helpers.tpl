{{/* The chart's name. */}}
{{- define "periscope.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: objects and, when sharded, the pods' name prefix. */}}
{{- define "periscope.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "periscope.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "periscope.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The ServiceAccount's name. */}}
{{- define "periscope.serviceAccountName" -}}
{{- default (include "periscope.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "periscope.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "periscope.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the pods. */}}
{{- define "periscope.selectorLabels" -}}
app.kubernetes.io/name: {{ include "periscope.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The image reference: the digest when set, else the tag (default appVersion). */}}
{{- define "periscope.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Refuses extra plugins that the config does not pin or cannot find. */}}
{{- define "periscope.checkExtraPlugins" -}}
{{- range .Values.extraPlugins }}
{{- if not .sha256 }}
{{- fail (printf "extraPlugins: %s has no sha256 (take it from `periscope plugins inspect`)" .name) }}
{{- end }}
{{- if not (contains (printf "sha256 = %s" (quote .sha256)) $.Values.config) }}
{{- fail (printf "extraPlugins: %s: the config pins no exporter with sha256 = %s" .name (quote .sha256)) }}
{{- end }}
{{- if not (contains "/usr/lib/periscope/extra/plugins" $.Values.config) }}
{{- fail (printf "extraPlugins: %s: add \"/usr/lib/periscope/extra/plugins\" to host.plugin_dirs in the config" .name) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The pod template of the Deployment or the StatefulSet. */}}
{{- define "periscope.podTemplate" -}}
metadata:
  labels:
    {{- include "periscope.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "periscope.serviceAccountName" . }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  {{- with .Values.extraPlugins }}
  initContainers:
    {{- range . }}
    - name: {{ printf "plugin-%s" .name | trunc 63 | trimSuffix "-" }}
      image: {{ .image }}
      imagePullPolicy: {{ $.Values.image.pullPolicy }}
      command:
        {{- if .command }}
        {{- toYaml .command | nindent 8 }}
        {{- else }}
        - sh
        - -c
        - {{ printf "mkdir -p -m 0755 /extra/plugins && cp %s /extra/plugins/ && chmod 0644 /extra/plugins/*" .file | quote }}
        {{- end }}
      securityContext:
        {{- toYaml $.Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: extra-plugins
          mountPath: /extra
    {{- end }}
  {{- end }}
  containers:
    - name: periscope
      image: {{ include "periscope.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - --log-format={{ .Values.logFormat }}
        - run
        - --config=/etc/periscope/periscope.toml
        {{- if .Values.sharding.enabled }}
        - --shard-from-hostname
        - --hostname=$(POD_NAME)
        {{- end }}
        {{- with .Values.extraArgs }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      env:
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: POD_NAMESPACE
          valueFrom:
            fieldRef:
              fieldPath: metadata.namespace
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: self-metrics
          containerPort: {{ .Values.ports.selfMetrics }}
          protocol: TCP
        - name: page
          containerPort: {{ .Values.ports.page }}
          protocol: TCP
      startupProbe:
        {{- toYaml .Values.probes.startup | nindent 8 }}
      livenessProbe:
        {{- toYaml .Values.probes.liveness | nindent 8 }}
      readinessProbe:
        {{- toYaml .Values.probes.readiness | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/periscope
          readOnly: true
        - name: data
          mountPath: /var/lib/periscope
        {{- if .Values.extraPlugins }}
        - name: extra-plugins
          mountPath: /usr/lib/periscope/extra
          readOnly: true
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "periscope.fullname" . }}
    {{- if not .Values.persistence.enabled }}
    - name: data
      emptyDir: {}
    {{- else if not .Values.sharding.enabled }}
    - name: data
      persistentVolumeClaim:
        claimName: {{ include "periscope.fullname" . }}
    {{- end }}
    {{- if .Values.extraPlugins }}
    - name: extra-plugins
      emptyDir: {}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
