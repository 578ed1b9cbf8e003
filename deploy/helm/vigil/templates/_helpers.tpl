{{/* Names: with release "vigil" every object is named as in deploy/base (vigil-remediator, ...). */}}
{{- define "vigil.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Standard labels (helm.sh/docs/chart_best_practices/labels). */}}
{{- define "vigil.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ default .Chart.Name .Values.nameOverride }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vigil
{{- end -}}

{{/* Selector labels of one component: immutable, so no chart or version labels. `app` is what
     alerts/prometheus-kubernetes.yml and the monitors select on. Call with (list $ "component"). */}}
{{- define "vigil.selectorLabels" -}}
{{- $root := index . 0 -}}
app: {{ include "vigil.fullname" $root }}-{{ index . 1 }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
{{- end -}}

{{- define "vigil.componentLabels" -}}
{{ include "vigil.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{ include "vigil.selectorLabels" . }}
{{- end -}}

{{/* image of a component: (list $ .Values.<component>.image) */}}
{{- define "vigil.image" -}}
{{- $root := index . 0 -}}
{{- $img := index . 1 -}}
{{- $repo := default $root.Values.image.repository $img.repository -}}
{{- $tag := default (default $root.Chart.AppVersion $root.Values.image.tag) $img.tag -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}

{{- define "vigil.amcNamespace" -}}
{{- default .Release.Namespace .Values.alertmanagerConfig.namespace -}}
{{- end -}}

{{/* The webhook token: the given one, the one already in the cluster (upgrades), or a new random one. */}}
{{- define "vigil.webhookToken" -}}
{{- $s := .Values.remediator.webhookSecret -}}
{{- if $s.token -}}
{{- $s.token -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace $s.name -}}
{{- if and $existing (index $existing.data $s.key) -}}
{{- index $existing.data $s.key | b64dec -}}
{{- else -}}
{{- randAlphaNum 40 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Checks that fail the render with a message instead of a broken install. */}}
{{- define "vigil.validate" -}}
{{- $r := .Values.remediator -}}
{{- if not (has $r.ledger.backend (list "sqlite" "kubernetes")) -}}
{{- fail (printf "remediator.ledger.backend must be sqlite or kubernetes, not %q" $r.ledger.backend) -}}
{{- end -}}
{{- if and (eq $r.ledger.backend "sqlite") (gt (include "vigil.remediatorReplicas" . | int) 1) -}}
{{- fail "remediator.replicas > 1 needs remediator.ledger.backend=kubernetes (an SQLite ledger has one writer)" -}}
{{- end -}}
{{- range $k := list "server" "auth" "ledger" -}}
{{- if hasKey $r.config $k -}}
{{- fail (printf "remediator.config.%s is set by the chart (remediator.port, remediator.webhookSecret, remediator.ledger): remove it" $k) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.alertmanagerConfig.enabled (not $r.enabled) -}}
{{- fail "alertmanagerConfig.enabled routes to the remediator: enable remediator too" -}}
{{- end -}}
{{- end -}}

{{- /* The remediator's replicas: remediator.replicas, or (null) 3 with the kubernetes ledger, 1 with sqlite. */}}
{{- define "vigil.remediatorReplicas" -}}
{{- $r := .Values.remediator -}}
{{- if kindIs "invalid" $r.replicas -}}
{{- ternary 3 1 (eq $r.ledger.backend "kubernetes") -}}
{{- else -}}
{{- $r.replicas | int -}}
{{- end -}}
{{- end -}}
