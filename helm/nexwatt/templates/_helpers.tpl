{{/*
Names and labels.
*/}}
{{- define "nexwatt.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "nexwatt.fullname" -}}
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

{{- define "nexwatt.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "nexwatt.labels" -}}
helm.sh/chart: {{ include "nexwatt.chart" . }}
app.kubernetes.io/name: {{ include "nexwatt.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: nexwatt
{{- end }}

{{/*
The components, by values key, in pipeline order. Each has a block of the same shape in values.
*/}}
{{- define "nexwatt.componentKeys" -}}
onboarding,telemetryIngest,capacityModel,dispatch,settlement
{{- end }}

{{/* Components that use Redis (they need NEXWATT_REDIS_URL to point somewhere real). */}}
{{- define "nexwatt.redisComponentKeys" -}}
dispatch
{{- end }}

{{/* "telemetryIngest" -> "telemetry-ingest": the service name, console script suffix and label. */}}
{{- define "nexwatt.componentName" -}}
{{- kebabcase . }}
{{- end }}

{{/* Arguments of the per-component helpers: (dict "root" $ "key" "telemetryIngest"). */}}
{{- define "nexwatt.componentFullname" -}}
{{- printf "%s-%s" (include "nexwatt.fullname" .root) (include "nexwatt.componentName" .key) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "nexwatt.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nexwatt.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ include "nexwatt.componentName" .key }}
{{- end }}

{{- define "nexwatt.componentLabels" -}}
{{ include "nexwatt.labels" .root }}
app.kubernetes.io/component: {{ include "nexwatt.componentName" .key }}
{{- end }}

{{/*
Values with fallback to global: a component's empty value means "use global".
*/}}
{{- define "nexwatt.image" -}}
{{- $c := index .root.Values .key }}
{{- $g := .root.Values.global.image }}
{{- $repo := $c.image.repository | default $g.repository }}
{{- $tag := $c.image.tag | default $g.tag | default .root.Chart.AppVersion }}
{{- printf "%s:%s" $repo (toString $tag) }}
{{- end }}

{{- define "nexwatt.pullPolicy" -}}
{{- $c := index .root.Values .key }}
{{- $c.image.pullPolicy | default .root.Values.global.image.pullPolicy }}
{{- end }}

{{- define "nexwatt.resources" -}}
{{- $c := index .root.Values .key }}
{{- toYaml ($c.resources | default .root.Values.global.resources) }}
{{- end }}

{{- define "nexwatt.nodeSelector" -}}
{{- $c := index .root.Values .key }}
{{- toYaml ($c.nodeSelector | default .root.Values.global.nodeSelector) }}
{{- end }}

{{- define "nexwatt.tolerations" -}}
{{- $c := index .root.Values .key }}
{{- toYaml ($c.tolerations | default .root.Values.global.tolerations) }}
{{- end }}

{{- define "nexwatt.affinity" -}}
{{- $c := index .root.Values .key }}
{{- toYaml ($c.affinity | default .root.Values.global.affinity) }}
{{- end }}

{{- define "nexwatt.secretName" -}}
{{- .Values.global.existingSecret | default (include "nexwatt.fullname" .) }}
{{- end }}

{{/*
Non-secret settings of one component, as a YAML map (the ConfigMap's data, the hook Job's env).
Precedence, lowest first: chart-computed values, global.env, the component's env.
*/}}
{{- define "nexwatt.configData" -}}
{{- $g := .root.Values.global }}
{{- $c := index .root.Values .key }}
{{- $data := dict
  "NEXWATT_KAFKA_BOOTSTRAP_SERVERS" $g.kafka.bootstrapServers
  "NEXWATT_HTTP_PORT" (toString $c.service.port)
  "NEXWATT_POSTGRES_DATABASE" (printf "nexwatt_%s" (snakecase .key))
}}
{{- if $g.kafka.sasl.enabled }}
{{- $_ := set $data "NEXWATT_KAFKA_SECURITY_PROTOCOL" $g.kafka.sasl.securityProtocol }}
{{- $_ := set $data "NEXWATT_KAFKA_SASL_MECHANISM" $g.kafka.sasl.mechanism }}
{{- end }}
{{- range $k, $v := $g.env }}
{{- $_ := set $data $k (toString $v) }}
{{- end }}
{{- range $k, $v := $c.env }}
{{- $_ := set $data $k (toString $v) }}
{{- end }}
{{- range $k := keys $data | sortAlpha }}
{{ $k }}: {{ index $data $k | quote }}
{{- end }}
{{- end }}

{{/* Settings of `nexwatt-admin create-topics` in the hook Job. */}}
{{- define "nexwatt.adminConfigData" -}}
{{- $g := .Values.global }}
{{- $data := dict "NEXWATT_KAFKA_BOOTSTRAP_SERVERS" $g.kafka.bootstrapServers }}
{{- if $g.kafka.sasl.enabled }}
{{- $_ := set $data "NEXWATT_KAFKA_SECURITY_PROTOCOL" $g.kafka.sasl.securityProtocol }}
{{- $_ := set $data "NEXWATT_KAFKA_SASL_MECHANISM" $g.kafka.sasl.mechanism }}
{{- end }}
{{- range $k, $v := $g.env }}
{{- $_ := set $data $k (toString $v) }}
{{- end }}
{{- range $k := keys $data | sortAlpha }}
{{ $k }}: {{ index $data $k | quote }}
{{- end }}
{{- end }}

{{/* The chart-made Secret's data (base64), when global.existingSecret is not set. */}}
{{- define "nexwatt.secretData" -}}
{{- $g := .Values.global }}
NEXWATT_POSTGRES_URL: {{ $g.postgres.url | b64enc | quote }}
{{- if $g.redis.url }}
NEXWATT_REDIS_URL: {{ $g.redis.url | b64enc | quote }}
{{- end }}
{{- if $g.kafka.sasl.enabled }}
NEXWATT_KAFKA_SASL_USERNAME: {{ $g.kafka.sasl.username | b64enc | quote }}
NEXWATT_KAFKA_SASL_PASSWORD: {{ $g.kafka.sasl.password | b64enc | quote }}
{{- end }}
{{- end }}

{{/* Pod annotations that roll a component's pods when its settings or credentials change. */}}
{{- define "nexwatt.checksums" -}}
checksum/config: {{ include "nexwatt.configData" . | sha256sum }}
{{- if .root.Values.global.existingSecret }}
checksum/secret: {{ .root.Values.global.existingSecret | sha256sum }}
{{- else }}
checksum/secret: {{ include "nexwatt.secretData" .root | sha256sum }}
{{- end }}
{{- end }}

{{/*
Fail early, with a message that says what to set, when an external server is not configured.
*/}}
{{- define "nexwatt.validate" -}}
{{- $g := .Values.global }}
{{- $_ := required "global.kafka.bootstrapServers is required: this chart does not install Kafka. Set it to your cluster's bootstrap servers, e.g. --set global.kafka.bootstrapServers=my-kafka-bootstrap.kafka:9092" $g.kafka.bootstrapServers }}
{{- if not $g.existingSecret }}
{{- $_ := required "global.postgres.url is required (or global.existingSecret): this chart does not install PostgreSQL. Set a server URL without a database, e.g. --set global.postgres.url=postgresql://nexwatt:PASSWORD@postgres.db:5432" $g.postgres.url }}
{{- $needsRedis := false }}
{{- range $key := splitList "," (include "nexwatt.redisComponentKeys" .) }}
{{- if (index $.Values $key).enabled }}
{{- $needsRedis = true }}
{{- end }}
{{- end }}
{{- if $needsRedis }}
{{- $_ := required "global.redis.url is required (or global.existingSecret) while dispatch is enabled: this chart does not install Redis. E.g. --set global.redis.url=redis://redis-master.cache:6379/0" $g.redis.url }}
{{- end }}
{{- if $g.kafka.sasl.enabled }}
{{- $_ := required "global.kafka.sasl.username is required when global.kafka.sasl.enabled is true (or use global.existingSecret)" $g.kafka.sasl.username }}
{{- $_ := required "global.kafka.sasl.password is required when global.kafka.sasl.enabled is true (or use global.existingSecret)" $g.kafka.sasl.password }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The optional `connectors` component (`nexwatt-ingest connect`). Not a service: no HTTP port, no
Service; it shares telemetry-ingest's database and migrations.
*/}}
{{/* Vendors `nexwatt-ingest connect` knows (runner.VENDORS; a test keeps them equal). */}}
{{- define "nexwatt.connectorVendors" -}}
solaredge,enphase,sma-webconnect,sma-ennexos,generac,sunspec
{{- end }}

{{/* Non-secret settings of the connectors, as a YAML map (the ConfigMap's data). */}}
{{- define "nexwatt.connectorsConfigData" -}}
{{- $g := .Values.global }}
{{- $c := .Values.connectors }}
{{- $data := dict
  "NEXWATT_KAFKA_BOOTSTRAP_SERVERS" $g.kafka.bootstrapServers
  "NEXWATT_POSTGRES_DATABASE" "nexwatt_telemetry_ingest"
}}
{{- if $g.kafka.sasl.enabled }}
{{- $_ := set $data "NEXWATT_KAFKA_SECURITY_PROTOCOL" $g.kafka.sasl.securityProtocol }}
{{- $_ := set $data "NEXWATT_KAFKA_SASL_MECHANISM" $g.kafka.sasl.mechanism }}
{{- end }}
{{- range $k, $v := $g.env }}
{{- $_ := set $data $k (toString $v) }}
{{- end }}
{{- range $k, $v := $c.env }}
{{- $_ := set $data $k (toString $v) }}
{{- end }}
{{- range $k := keys $data | sortAlpha }}
{{ $k }}: {{ index $data $k | quote }}
{{- end }}
{{- end }}

{{/*
connectors.sites as the JSON list `--sites` reads; fails rendering on an incomplete site or an
unknown vendor. Every field is rendered as a string (a site_id written as a YAML number too).
*/}}
{{- define "nexwatt.connectorsSites" -}}
{{- $vendors := splitList "," (include "nexwatt.connectorVendors" .) }}
{{- $sites := list }}
{{- if not .Values.connectors.sites }}
{{- fail "connectors.sites is empty: list the sites to poll (asset_id, vendor, site_id, timezone) or set connectors.enabled=false" }}
{{- end }}
{{- range $i, $s := .Values.connectors.sites }}
{{- $site := dict }}
{{- range $field := list "asset_id" "vendor" "site_id" "timezone" }}
{{- $v := index $s $field | default "" }}
{{- if kindIs "float64" $v }}
{{- $v = int64 $v }}{{/* YAML numbers arrive as floats: 1234567, not 1.234567e+06 */}}
{{- end }}
{{- $v = toString $v | trim }}
{{- $_ := set $site $field (required (printf "connectors.sites[%d].%s is required" $i $field) $v) }}
{{- end }}
{{- if not (has $site.vendor $vendors) }}
{{- fail (printf "connectors.sites[%d].vendor %q is not one of %s" $i $site.vendor (join ", " $vendors)) }}
{{- end }}
{{- $sites = append $sites $site }}
{{- end }}
{{- toPrettyJson $sites }}
{{- end }}

{{/* The Secret with the vendor credentials: connectors.existingSecret, the chart's, or none. */}}
{{- define "nexwatt.connectorsSecretName" -}}
{{- if .Values.connectors.existingSecret }}
{{- .Values.connectors.existingSecret }}
{{- else if .Values.connectors.secrets }}
{{- include "nexwatt.componentFullname" (dict "root" . "key" "connectors") }}
{{- end }}
{{- end }}

{{/* The chart-made vendor Secret's data (base64); keys must be NEXWATT_* settings. */}}
{{- define "nexwatt.connectorsSecretData" -}}
{{- $secrets := .Values.connectors.secrets | default dict }}
{{- range $k := keys $secrets | sortAlpha }}
{{- if not (hasPrefix "NEXWATT_" $k) }}
{{- fail (printf "connectors.secrets.%s: keys are environment variables named NEXWATT_*, e.g. NEXWATT_SOLAREDGE_API_KEY" $k) }}
{{- end }}
{{ $k }}: {{ index $secrets $k | toString | b64enc | quote }}
{{- end }}
{{- end }}

{{/* Roll the connectors pod when its settings, sites or credentials change. */}}
{{- define "nexwatt.connectorsChecksums" -}}
checksum/config: {{ print (include "nexwatt.connectorsConfigData" .) (include "nexwatt.connectorsSites" .) | sha256sum }}
{{- $secret := .Values.global.existingSecret | default (include "nexwatt.secretData" .) }}
{{- $vendor := .Values.connectors.existingSecret | default (include "nexwatt.connectorsSecretData" .) }}
checksum/secret: {{ print $secret $vendor | sha256sum }}
{{- end }}

{{/*
NetworkPolicies (networkPolicy.*). Fails rendering when a values key there names no component.
*/}}
{{- define "nexwatt.networkPolicyValidate" -}}
{{- $np := .Values.networkPolicy }}
{{- $keys := splitList "," (include "nexwatt.componentKeys" .) }}
{{- range $peer := list "apiClients" "gateways" }}
{{- range $k := (index $np $peer).components }}
{{- if not (has $k $keys) }}
{{- fail (printf "networkPolicy.%s.components: %q is not one of %s" $peer $k (join ", " $keys)) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $i, $call := $np.internal }}
{{- range $end := list "from" "to" }}
{{- if not (has (index $call $end | default "") $keys) }}
{{- fail (printf "networkPolicy.internal[%d].%s: %q is not one of %s" $i $end (index $call $end | default "") (join ", " $keys)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Egress rules, as a YAML list: networkPolicy.egress.<name> for each of .names, then a call to
each component in .calls (values keys) on its HTTP port. An empty `to` is left out: any peer.
*/}}
{{- define "nexwatt.networkPolicyEgress" -}}
{{- $root := .root }}
{{- $rules := list }}
{{- range $name := .names }}
{{- $e := index $root.Values.networkPolicy.egress $name }}
{{- $rule := dict "ports" $e.ports }}
{{- if $e.to }}
{{- $_ := set $rule "to" $e.to }}
{{- end }}
{{- $rules = append $rules $rule }}
{{- end }}
{{- range $key := .calls }}
{{- $peer := dict "podSelector" (dict "matchLabels" (include "nexwatt.selectorLabels" (dict "root" $root "key" $key) | fromYaml)) }}
{{- $port := dict "port" (index $root.Values $key).service.port "protocol" "TCP" }}
{{- $rules = append $rules (dict "to" (list $peer) "ports" (list $port)) }}
{{- end }}
{{- toYaml $rules }}
{{- end }}

{{/*
Ingress rules of one component (dict "root" $ "key" "onboarding"), as a YAML list: its HTTP port
for the API clients and gateways it lists, Prometheus (metrics.enabled) and internal callers.
*/}}
{{- define "nexwatt.networkPolicyIngress" -}}
{{- $root := .root }}
{{- $key := .key }}
{{- $np := $root.Values.networkPolicy }}
{{- $c := index $root.Values $key }}
{{- $ports := list (dict "port" $c.service.port "protocol" "TCP") }}
{{- $rules := list }}
{{- range $peer := list "apiClients" "gateways" }}
{{- $p := index $np $peer }}
{{- if and $p.from (has $key $p.components) }}
{{- $rules = append $rules (dict "from" $p.from "ports" $ports) }}
{{- end }}
{{- end }}
{{- if and $c.metrics.enabled $np.prometheus.from }}
{{- $rules = append $rules (dict "from" $np.prometheus.from "ports" $ports) }}
{{- end }}
{{- range $call := $np.internal }}
{{- if and (eq $call.to $key) (index $root.Values $call.from).enabled }}
{{- $caller := include "nexwatt.selectorLabels" (dict "root" $root "key" $call.from) | fromYaml }}
{{- $rules = append $rules (dict "from" (list (dict "podSelector" (dict "matchLabels" $caller))) "ports" $ports) }}
{{- end }}
{{- end }}
{{- toYaml $rules }}
{{- end }}

{{/* The components a component calls (networkPolicy.internal), as a comma-separated list. */}}
{{- define "nexwatt.networkPolicyCalls" -}}
{{- $calls := list }}
{{- range $call := .root.Values.networkPolicy.internal }}
{{- if and (eq $call.from $.key) (index $.root.Values $call.to).enabled }}
{{- $calls = append $calls $call.to }}
{{- end }}
{{- end }}
{{- join "," $calls }}
{{- end }}
