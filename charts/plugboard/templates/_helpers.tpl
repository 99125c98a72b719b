{{/* Names: <release>-plugboard unless the release name already contains the chart name. */}}
{{- define "plugboard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "plugboard.fullname" -}}
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

{{- define "plugboard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "plugboard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: plugboard
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: include "plugboard.selectorLabels" (list . "gateway") */}}
{{- define "plugboard.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "plugboard.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "plugboard.componentLabels" -}}
{{ include "plugboard.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "plugboard.operator.fullname" -}}{{ include "plugboard.fullname" . }}-operator{{- end -}}
{{- define "plugboard.gateway.fullname" -}}{{ include "plugboard.fullname" . }}-gateway{{- end -}}

{{- define "plugboard.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "plugboard.operator.fullname" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "plugboard.gateway.serviceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create -}}
{{- default (include "plugboard.gateway.fullname" .) .Values.gateway.serviceAccount.name -}}
{{- else -}}
{{- required "gateway.serviceAccount.name is required when gateway.serviceAccount.create is false" .Values.gateway.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The operator writes the snapshot under this fixed name (src/snapshot/codec.ts); the Lease likewise. */}}
{{- define "plugboard.snapshotSecretName" -}}plugboard-snapshot{{- end -}}
{{/*
A snapshot too big for one Secret continues in `<name>-1` … `<name>-64` (MAX_SHARDS in src/snapshot/shards.ts):
fixed names, so RBAC can grant them by resourceNames. Renders them as YAML list items.
*/}}
{{- define "plugboard.snapshotShardNames" -}}
{{- $root := include "plugboard.snapshotSecretName" . -}}
{{- $names := list -}}
{{- range $i := until 64 -}}
{{- $names = append $names (printf "%s-%d" $root (add1 $i)) -}}
{{- end -}}
{{- toYaml $names -}}
{{- end -}}
{{- define "plugboard.leaseName" -}}plugboard-operator{{- end -}}

{{- define "plugboard.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The restricted Pod Security Standard, for pod and container. */}}
{{- define "plugboard.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "plugboard.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Values that the schema cannot check across fields; fail early with a message that says what to do. */}}
{{- define "plugboard.validate" -}}
{{- if and .Values.gateway.clientKeys.required (not .Values.gateway.clientKeys.existingSecret) -}}
{{- fail "\n\ngateway.clientKeys: the in-cluster endpoint requires client API keys by default.\n  Create a Secret with data key keys.yaml in the release namespace, e.g.\n    kubectl create secret generic plugboard-client-keys --from-file=keys.yaml\n  and set gateway.clientKeys.existingSecret=plugboard-client-keys,\n  or set gateway.clientKeys.required=false to serve without keys (anyone who can reach the Service can use your providers)." -}}
{{- end -}}
{{- if and (gt (int .Values.operator.replicas) 1) (not .Values.operator.leaderElection) -}}
{{- fail "\n\noperator.replicas > 1 needs operator.leaderElection=true (two leaders would both write status and the snapshot)." -}}
{{- end -}}
{{- if and .Values.gateway.autoscaling.enabled (gt (int .Values.gateway.autoscaling.minReplicas) (int .Values.gateway.autoscaling.maxReplicas)) -}}
{{- fail "\n\ngateway.autoscaling.minReplicas must not exceed gateway.autoscaling.maxReplicas." -}}
{{- end -}}
{{- if eq (int .Values.gateway.port) (int .Values.gateway.metricsPort) -}}
{{- fail "\n\ngateway.port and gateway.metricsPort must differ." -}}
{{- end -}}
{{- end -}}

{{/*
NODE_OPTIONS from a container's limits: (dict "resources" R "semiSpaceDivisor" D). Memory (Mi or Gi): V8's old
generation gets half of it and each young semi-space 1/D of it (2–16 MiB; the gateway allocates fast and takes a
larger share than the operator). Left to itself V8 sizes its heap from the node's memory, lets a busy proxy's garbage
pile up to hundreds of MiB between collections, and meets the OOM killer before its own limit. The other half
holds code, the young generation and off-heap buffers (sockets, TLS, zlib, the decoded snapshot's strings).
CPU: V8's background threads (concurrent and parallel GC) get the cores beyond the one JavaScript runs on, at
least one; Node's default of four competes with the main thread for a small CPU quota.
*/}}
{{- define "plugboard.nodeOptions" -}}
{{- $mem := toString (dig "limits" "memory" "512Mi" .resources) -}}
{{- $mib := 512 -}}
{{- if hasSuffix "Gi" $mem -}}{{- $mib = mul (trimSuffix "Gi" $mem | int) 1024 -}}
{{- else if hasSuffix "Mi" $mem -}}{{- $mib = trimSuffix "Mi" $mem | int -}}
{{- end -}}
{{- $cpu := toString (dig "limits" "cpu" "1" .resources) -}}
{{- $cores := 1 -}}
{{- if hasSuffix "m" $cpu -}}{{- $cores = div (trimSuffix "m" $cpu | int) 1000 -}}
{{- else -}}{{- $cores = $cpu | float64 | floor | int -}}
{{- end -}}
--max-old-space-size={{ div $mib 2 }} --max-semi-space-size={{ max 2 (min 16 (div $mib .semiSpaceDivisor)) }} --v8-pool-size={{ max 1 (sub $cores 1) }}
{{- end -}}

{{/* The upstream address policy flags, shared by the operator and the gateway. */}}
{{- define "plugboard.addressPolicyArgs" -}}
{{- $p := .Values.upstreamAddressPolicy -}}
- --allow-loopback={{ $p.allowLoopback }}
{{- with $p.denyCidrs }}
- --deny-cidrs={{ join "," . }}
{{- end }}
{{- with $p.allowCidrs }}
- --allow-cidrs={{ join "," . }}
{{- end }}
{{- with $p.nat64Prefixes }}
- --nat64-prefixes={{ join "," . }}
{{- end }}
{{- end -}}
