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
{{- fail (printf "remediator.config.%s is set by the chart (remediator.port, remediator.auth, remediator.ledger): remove it" $k) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.alertmanagerConfig.enabled (not $r.enabled) -}}
{{- fail "alertmanagerConfig.enabled routes to the remediator: enable remediator too" -}}
{{- end -}}
{{- $a := .Values.alertmanagerConfig -}}
{{- $names := list -}}
{{- range $a.receivers }}{{ $names = append $names .name }}{{ end -}}
{{- if and $a.notificationsReceiver (not (has $a.notificationsReceiver $names)) -}}
{{- fail (printf "alertmanagerConfig.notificationsReceiver %q: add a receiver of that name to alertmanagerConfig.receivers" $a.notificationsReceiver) -}}
{{- end -}}
{{- if and $r.enabled (hasKey $r.config "repair") (not .Values.repair.enabled) -}}
{{- fail "remediator.config.repair is set but repair.enabled is false: the repair RBAC and namespace would be missing (set repair.enabled=true and the providers)" -}}
{{- end -}}
{{- if and $r.enabled .Values.repair.enabled (hasKey $r.config "repair") -}}
{{- $ns := default "vigil-repair" $r.config.repair.namespace -}}
{{- if ne $ns .Values.repair.namespace.name -}}
{{- fail (printf "remediator.config.repair.namespace %q differs from repair.namespace.name %q: the Jobs would run where Vigil has no rights" $ns .Values.repair.namespace.name) -}}
{{- end -}}
{{- end -}}
{{- $g := .Values.gpuExporter -}}
{{- if and $g.enabled $g.namespace.create (not $g.namespace.name) -}}
{{- fail "gpuExporter.namespace.create needs gpuExporter.namespace.name (the release namespace is not the chart's to create)" -}}
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

{{/* The namespace of the GPU exporter's DaemonSet: gpuExporter.namespace.name, or the release's. */}}
{{- define "vigil.gpuNamespace" -}}
{{- default .Release.Namespace .Values.gpuExporter.namespace.name -}}
{{- end -}}

{{/* Scheduling and pod extras every component takes (dcgm-exporter / kube-prometheus-stack names):
     nodeSelector, tolerations, affinity, priorityClassName, runtimeClassName. Call with a component's values;
     an empty value renders nothing. */}}
{{- define "vigil.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .runtimeClassName }}
runtimeClassName: {{ . }}
{{- end }}
{{- end -}}

{{/* A duration as Prometheus writes it (1m30s, 500ms) in milliseconds, for comparing interval and timeout. */}}
{{- define "vigil.ms" -}}
{{- $units := dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 "d" 86400000 -}}
{{- $total := 0 -}}
{{- range regexFindAll "[0-9]+(ms|s|m|h|d)" . -1 -}}
{{- $unit := regexFind "(ms|s|m|h|d)$" . -}}
{{- $total = add $total (mul (trimSuffix $unit . | int) (get $units $unit)) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/* interval/scrapeTimeout of one monitor endpoint; fails the render if the timeout is longer than the
     interval (Prometheus rejects such a scrape config). Call with (list "<values path>" $monitorValues). */}}
{{- define "vigil.scrapeTiming" -}}
{{- $where := index . 0 -}}
{{- $m := index . 1 -}}
interval: {{ $m.interval }}
{{- with $m.scrapeTimeout }}
{{- if gt (include "vigil.ms" . | int) (include "vigil.ms" $m.interval | int) }}
{{- fail (printf "%s.scrapeTimeout %s is longer than its interval %s: Prometheus rejects it (leave it empty for the interval)" $where . $m.interval) }}
{{- end }}
scrapeTimeout: {{ . }}
{{- end }}
{{- with $m.honorLabels }}
honorLabels: {{ . }}
{{- end }}
{{- with $m.metricRelabelings }}
metricRelabelings: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The credentials: one Secret per caller (intake: Alertmanager; read: viewers; admin: on-call).
     Its name: existingSecret, or the chart's <fullname>-<role>-token. */}}
{{- define "vigil.secretName" -}}
{{- $root := index . 0 -}}
{{- $role := index . 1 -}}
{{- $c := index $root.Values.remediator.auth $role -}}
{{- default (printf "%s-%s-token" (include "vigil.fullname" $root) $role) $c.existingSecret -}}
{{- end -}}

{{/* The roles whose credentials are on: intake and admin always, read unless disabled. */}}
{{- define "vigil.roles" -}}
{{- $roles := list "intake" -}}
{{- if .Values.remediator.auth.read.enabled }}{{ $roles = append $roles "read" }}{{ end -}}
{{- $roles = append $roles "admin" -}}
{{- join "," $roles -}}
{{- end -}}

{{/* Whether `lookup` sees a cluster (helm install/upgrade, --dry-run=server). Under `helm template` or
     `helm lint` it does not, and the chart then generates no secret: a render never changes between runs. */}}
{{- define "vigil.clusterVisible" -}}
{{- if lookup "v1" "Namespace" "" "default" }}true{{ end -}}
{{- end -}}

{{/* The value of a chart-managed Secret of `role` in `namespace`: the one already in the cluster (kept
     across upgrades), else a new random one. Empty when no cluster is visible. */}}
{{- define "vigil.generatedSecret" -}}
{{- $root := index . 0 -}}
{{- $role := index . 1 -}}
{{- $ns := index . 2 -}}
{{- $key := (index $root.Values.remediator.auth $role).key -}}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace (include "vigil.secretName" (list $root $role)) -}}
{{- if and $existing $existing.data (hasKey $existing.data $key) -}}
{{- index $existing.data $key | b64dec -}}
{{- else if include "vigil.clusterVisible" $root -}}
{{- randAlphaNum 40 -}}
{{- end -}}
{{- end -}}

{{/* vigil.yaml's auth: one named credential per role, each reading its own Secret's file (read again
     when the Secret changes). read and admin also answer Basic auth (browsers) with their username. */}}
{{- define "vigil.authConfig" -}}
{{- $a := .Values.remediator.auth -}}
{{- $creds := list -}}
{{- range $role := splitList "," (include "vigil.roles" .) -}}
{{- $c := index $a $role -}}
{{- $file := printf "/etc/vigil-secrets/%s/%s" $role $c.key -}}
{{- $cred := dict "name" $c.name "roles" (list $role) "bearer_token_file" $file -}}
{{- if ne $role "intake" -}}
{{- $_ := set $cred "basic_auth" (dict "username" $c.username "password_file" $file) -}}
{{- end -}}
{{- $creds = append $creds $cred -}}
{{- end -}}
{{- toYaml (dict "credentials" $creds) -}}
{{- end -}}
