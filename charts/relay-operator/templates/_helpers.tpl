{{/*
Chart name, truncated to the 63 characters of a DNS label.
*/}}
{{- define "relay-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name: the release name if it already contains the chart name.
*/}}
{{- define "relay-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "relay-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "relay-operator.labels" -}}
helm.sh/chart: {{ include "relay-operator.chart" . }}
{{ include "relay-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: relay-operator
{{- end }}

{{- define "relay-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "relay-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "relay-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "relay-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "relay-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Leader election is needed as soon as more than one replica runs.
*/}}
{{- define "relay-operator.leaderElection" -}}
{{- if or (gt (int .Values.replicaCount) 1) .Values.leaderElection.enabled }}true{{ end }}
{{- end }}

{{/*
Fail early on value combinations the schema cannot (or might not) express.
*/}}
{{- define "relay-operator.validate" -}}
{{- if and (eq .Values.rbac.scope "namespaced") (empty .Values.watchNamespaces) }}
{{- fail "rbac.scope=namespaced requires a non-empty watchNamespaces list" }}
{{- end }}
{{- if .Values.watchNamespaces }}
{{- range .Values.rbac.secretNamespaces }}
{{- if not (has . $.Values.watchNamespaces) }}
{{- fail (printf "rbac.secretNamespaces: %q is not in watchNamespaces (the operator reads Secrets only in namespaces it watches)" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The namespaces whose Secrets the operator reads, as a JSON list: rbac.secretNamespaces, or
when that is empty the watched namespaces (none when watching all). Each gets a Role with
the secret rules; the ClusterRole never grants Secrets.
*/}}
{{- define "relay-operator.secretNamespaces" -}}
{{- .Values.rbac.secretNamespaces | default .Values.watchNamespaces | uniq | toJson }}
{{- end }}

{{/*
THE controller RBAC rules: the single source of truth for both rbac.scope
modes (rendered into the ClusterRole, or into one Role per watched namespace).
Grant exactly what the controller uses; never "*".
A Rust test extracts these from `helm template` output: select documents with
label relayops.io/rbac=controller (ClusterRole or Role),
relayops.io/rbac=secrets (Role) and relayops.io/rbac=leader-election (Role), and
read .rules.
*/}}
{{- define "relay-operator.controllerRules" -}}
- apiGroups: [""]
  resources: ["pods", "services", "configmaps", "persistentvolumeclaims"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# A canary starting over a live configuration reads it (the cache keeps only its hash).
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
# Ingresses of RelayServices with spec.ingress.
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# Kept revisions of RelayServices (revision history and rollback).
- apiGroups: ["apps"]
  resources: ["controllerrevisions"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
# Reload hooks with --hook-via proxy: POST is "create", PUT is "update".
- apiGroups: [""]
  resources: ["pods/proxy"]
  verbs: ["create", "update"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["relayops.io"]
  resources: ["relayservices", "healthpolicies"]
  verbs: ["list", "watch"]
- apiGroups: ["relayops.io"]
  resources: ["testdeployments"]
  verbs: ["list", "watch", "patch", "delete"]
- apiGroups: ["relayops.io"]
  resources: ["relayservices/status", "healthpolicies/status", "testdeployments/status"]
  verbs: ["patch"]
{{- end }}

{{/*
Secret rules: only ever granted by a Role (label relayops.io/rbac=secrets) in each namespace
of relay-operator.secretNamespaces, never cluster-wide. Referenced Secrets' values enter the
configuration hash and the reload hook's token; they stay in memory.
*/}}
{{- define "relay-operator.secretRules" -}}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["list", "watch"]
{{- end }}

{{/*
Leader-election rules: only ever granted by a Role in the release namespace.
*/}}
{{- define "relay-operator.leaderElectionRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "patch"]
{{- end }}
