{{/*
Names, labels and the pieces every component's pod shares: the image, the downward-API
environment, the Kafka security section (as the components' config files and flags take it,
cli/config/src/kafka.rs) and the Secret volumes it names.
*/}}

{{/* The release's base name: "tokentrail" for `helm install tokentrail`. */}}
{{- define "tokentrail.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* A component's name: (list $ "aggregator") → tokentrail-aggregator. */}}
{{- define "tokentrail.name" -}}
{{- printf "%s-%s" (include "tokentrail.fullname" (index . 0)) (index . 1) -}}
{{- end -}}

{{/* Labels selecting a component's pods: (list $ "aggregator"). */}}
{{- define "tokentrail.selector" -}}
app.kubernetes.io/name: {{ include "tokentrail.name" . }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
{{- end -}}

{{/* Every object's labels: (list $ "aggregator"). */}}
{{- define "tokentrail.labels" -}}
{{ include "tokentrail.selector" . }}
app.kubernetes.io/component: {{ index . 1 }}
app.kubernetes.io/part-of: tokentrail
app.kubernetes.io/version: {{ (index . 0).Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ (index . 0).Release.Service }}
helm.sh/chart: {{ printf "%s-%s" (index . 0).Chart.Name (index . 0).Chart.Version }}
{{- end -}}

{{- define "tokentrail.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The http listener's address, for health.listen and --metrics-listen. */}}
{{- define "tokentrail.httpListen" -}}
0.0.0.0:{{ .Values.httpPort }}
{{- end -}}

{{/* Pod annotations: a checksum of the configuration (pods restart when it changes) and
Prometheus' scrape annotations. */}}
{{- define "tokentrail.podAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/configmaps.yaml") . | sha256sum }}
{{- if .Values.prometheus.annotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.httpPort | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}

{{/* Environment of every component: its pod's name (the OTLP service.instance.id, and the
correlator's transactional id) and the OTLP endpoint. */}}
{{- define "tokentrail.env" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: OTEL_RESOURCE_ATTRIBUTES
  value: service.instance.id=$(POD_NAME)
{{- with .Values.otlp.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* The http port and probes of every long-running component. */}}
{{- define "tokentrail.probes" -}}
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  periodSeconds: 10
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  initialDelaySeconds: 30
  periodSeconds: 20
{{- end -}}

{{/* A component's Kafka user name and Secret: (list $ "aggregator"). */}}
{{- define "tokentrail.kafkaUser" -}}
{{- $user := index (index . 0).Values.kafka.users (index . 1) | default dict -}}
{{- $user.username | default (include "tokentrail.name" .) -}}
{{- end -}}
{{- define "tokentrail.kafkaUserSecret" -}}
{{- $user := index (index . 0).Values.kafka.users (index . 1) | default dict -}}
{{- $user.secretName | default (include "tokentrail.name" .) -}}
{{- end -}}

{{/* Where the Kafka Secrets are mounted. */}}
{{- define "tokentrail.kafkaCADir" -}}/etc/tokentrail/kafka-ca{{- end -}}
{{- define "tokentrail.kafkaUserDir" -}}/etc/tokentrail/kafka-user{{- end -}}

{{- define "tokentrail.kafkaProtocols" -}}plaintext ssl sasl_plaintext sasl_ssl{{- end -}}

{{/* The `security` section of a component's config, as JSON: (list $ "aggregator"). */}}
{{- define "tokentrail.kafkaSecurity" -}}
{{- $ := index . 0 -}}
{{- $s := $.Values.kafka.security -}}
{{- $protocol := $s.protocol | lower -}}
{{- if not (has $protocol (splitList " " (include "tokentrail.kafkaProtocols" .))) -}}
{{- fail (printf "kafka.security.protocol: %q is not one of %s" $s.protocol (include "tokentrail.kafkaProtocols" .)) -}}
{{- end -}}
{{- $section := dict "protocol" $protocol -}}
{{- if or (eq $protocol "ssl") (eq $protocol "sasl_ssl") -}}
{{- $tls := dict -}}
{{- if $s.tls.caSecret.name -}}
{{- $_ := set $tls "ca_file" (printf "%s/%s" (include "tokentrail.kafkaCADir" .) $s.tls.caSecret.key) -}}
{{- end -}}
{{- if $s.tls.clientCertificate -}}
{{- $_ := set $tls "cert_file" (printf "%s/%s" (include "tokentrail.kafkaUserDir" .) $s.tls.certKey) -}}
{{- $_ := set $tls "key_file" (printf "%s/%s" (include "tokentrail.kafkaUserDir" .) $s.tls.keyKey) -}}
{{- end -}}
{{- $_ := set $section "tls" $tls -}}
{{- else if or $s.tls.caSecret.name $s.tls.clientCertificate -}}
{{- fail (printf "kafka.security.tls: needs protocol ssl or sasl_ssl, not %s" $protocol) -}}
{{- end -}}
{{- if hasPrefix "sasl_" $protocol -}}
{{- if eq $s.sasl.mechanism "OAUTHBEARER" -}}
{{- $o := $s.sasl.oauth | default dict -}}
{{- if not $o.tokenEndpoint -}}
{{- fail "kafka.security.sasl.oauth.tokenEndpoint: is required with OAUTHBEARER" -}}
{{- end -}}
{{- $dir := include "tokentrail.kafkaUserDir" . -}}
{{- $sasl := dict "mechanism" "OAUTHBEARER" "token_endpoint" $o.tokenEndpoint "client_id" (include "tokentrail.kafkaUser" .) "client_secret_file" (printf "%s/%s" $dir ($o.clientSecretKey | default "client-secret")) -}}
{{- with $o.scope }}{{ $_ := set $sasl "scope" . }}{{ end -}}
{{- with $o.caKey }}{{ $_ := set $sasl "ca_file" (printf "%s/%s" $dir .) }}{{ end -}}
{{- $_ := set $section "sasl" $sasl -}}
{{- else -}}
{{- $_ := set $section "sasl" (dict "mechanism" $s.sasl.mechanism "username" (include "tokentrail.kafkaUser" .) "password_file" (printf "%s/%s" (include "tokentrail.kafkaUserDir" .) $s.sasl.passwordKey)) -}}
{{- end -}}
{{- end -}}
{{- toJson $section -}}
{{- end -}}

{{/* Whether a component's Kafka user Secret is mounted (a client certificate, a password or an
OAuth client secret). */}}
{{- define "tokentrail.kafkaUserMounted" -}}
{{- $s := .Values.kafka.security -}}
{{- if or (hasPrefix "sasl_" ($s.protocol | lower)) (and $s.tls.clientCertificate (hasSuffix "ssl" ($s.protocol | lower))) -}}true{{- end -}}
{{- end -}}

{{/* The Kafka Secret volumes of a component's pod: (list $ "aggregator"). */}}
{{- define "tokentrail.kafkaVolumes" -}}
{{- $ := index . 0 -}}
{{- $s := $.Values.kafka.security -}}
{{- if and $s.tls.caSecret.name (hasSuffix "ssl" ($s.protocol | lower)) }}
- name: kafka-ca
  secret:
    secretName: {{ $s.tls.caSecret.name }}
    items:
      - key: {{ $s.tls.caSecret.key }}
        path: {{ $s.tls.caSecret.key }}
{{- end }}
{{- if include "tokentrail.kafkaUserMounted" $ }}
- name: kafka-user
  secret:
    secretName: {{ include "tokentrail.kafkaUserSecret" . }}
{{- end }}
{{- end -}}

{{- define "tokentrail.kafkaVolumeMounts" -}}
{{- $s := .Values.kafka.security -}}
{{- if and $s.tls.caSecret.name (hasSuffix "ssl" ($s.protocol | lower)) }}
- name: kafka-ca
  mountPath: {{ include "tokentrail.kafkaCADir" . }}
  readOnly: true
{{- end }}
{{- if include "tokentrail.kafkaUserMounted" . }}
- name: kafka-user
  mountPath: {{ include "tokentrail.kafkaUserDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* Container securityContext of the non-root components. */}}
{{- define "tokentrail.restricted" -}}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "tokentrail.podSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The Service agents attest to: the aggregator's, or standalone's in its place. */}}
{{- define "tokentrail.attestationService" -}}
{{- include "tokentrail.name" (list . (ternary "standalone" "aggregator" .Values.standalone.enabled)) -}}
{{- end -}}
