{{/*
tether's permissions, each verb for a call in the code (the README's RBAC table says
which). No wildcard anywhere; tests/integration/helm.rs checks that these are enough
(tether reconciles as the chart's ServiceAccount) and no more than listed.
*/}}

{{/* The names of tether's CRDs, from the chart's crds/. */}}
{{- define "tether.crdNames" -}}
{{- range $path, $_ := .Files.Glob "crds/*.yaml" }}
- {{ (fromYaml ($.Files.Get $path)).metadata.name }}
{{- end }}
{{- end }}

{{/* Who the roles are bound to: tether's ServiceAccount. */}}
{{- define "tether.subjects" -}}
- kind: ServiceAccount
  name: {{ include "tether.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{/* Cluster-scoped kinds, in either mode. */}}
{{- define "tether.clusterRules" -}}
# `tether run` checks at start that its CRDs are installed and Established, and
# whether a kind's CRD is being deleted (then it lets the objects go, cloud untouched).
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  resourceNames:
    {{- include "tether.crdNames" . | trim | nindent 4 }}
  verbs: [get]
# Where and how to reach AWS: watched (cached), and read when a client is built; a
# ProviderConfig in use keeps tether's finalizer, and its InUse condition says by whom.
- apiGroups: [tether.dev]
  resources: [providerconfigs]
  verbs: [get, list, watch, patch]
- apiGroups: [tether.dev]
  resources: [providerconfigs/status]
  verbs: [patch]
# Claims are checked against their class; a class in use keeps tether's finalizer.
- apiGroups: [tether.dev]
  resources: [databaseclasses, instanceclasses]
  verbs: [get, list, watch, patch]
# A class's and a ProviderConfig's namespaceSelector are matched against the
# namespace's labels: watched (metadata only; with watchNamespaces, each watched
# namespace by name) and read.
- apiGroups: [""]
  resources: [namespaces]
  {{- with .Values.watchNamespaces }}
  resourceNames:
    {{- toYaml (uniq .) | nindent 4 }}
  {{- end }}
  verbs: [get, list, watch]
{{- end }}

{{/* Namespaced kinds, cluster-wide or in each watched namespace. */}}
{{- define "tether.namespacedRules" -}}
# Managed kinds: watched; finalizer and bookkeeping annotations patched; referenced
# objects read. DBInstances and Instances are also made (server-side apply: create
# and patch) and deleted for claims.
- apiGroups: [rds.tether.dev]
  resources: [dbsubnetgroups]
  verbs: [get, list, watch, patch]
- apiGroups: [ec2.tether.dev]
  resources: [securitygroups]
  verbs: [get, list, watch, patch]
- apiGroups: [rds.tether.dev]
  resources: [dbinstances]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [ec2.tether.dev]
  resources: [instances]
  verbs: [get, list, watch, create, patch, delete]
# Conditions and atProvider, by server-side apply.
- apiGroups: [rds.tether.dev]
  resources: [dbsubnetgroups/status, dbinstances/status]
  verbs: [patch]
- apiGroups: [ec2.tether.dev]
  resources: [securitygroups/status, instances/status]
  verbs: [patch]
# Claims: watched, finalizer patched, status written.
- apiGroups: [tether.dev]
  resources: [databaseclaims, instanceclaims]
  verbs: [list, watch, patch]
- apiGroups: [tether.dev]
  resources: [databaseclaims/status, instanceclaims/status]
  verbs: [patch]
# Owner references with blockOwnerDeletion (connection Secrets of DBInstances and
# Instances, the objects of claims): where the OwnerReferencesPermissionEnforcement
# admission plugin is on, setting one needs update on the owner's finalizers.
- apiGroups: [rds.tether.dev]
  resources: [dbinstances/finalizers]
  verbs: [update]
- apiGroups: [ec2.tether.dev]
  resources: [instances/finalizers]
  verbs: [update]
- apiGroups: [tether.dev]
  resources: [databaseclaims/finalizers, instanceclaims/finalizers]
  verbs: [update]
# Connection Secrets: their metadata watched (a changed or deleted one is put back),
# read, created, patched (never deleted: the garbage collector follows the owner);
# Secrets that objects name (a master password) read.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, patch]
# Events about the objects (a repeated Event is patched into a series).
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{/* The leader lease, in the release's namespace. */}}
{{- define "tether.leaseRules" -}}
# Created by the first replica; the name of a new object is no part of the request
# that creates it, so this rule cannot name it.
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [create]
# Read, watched (released?), renewed and released by patch: this release's lease only.
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  resourceNames: [{{ include "tether.leaseName" . }}]
  verbs: [get, list, watch, patch]
{{- end }}
