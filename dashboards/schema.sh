#!/bin/sh
# Grafana's own published dashboard schema, as JSON Schema, for the dashboard tests.
#
# Grafana publishes the dashboard model as TypeScript types generated from its CUE kinds (npm
# @grafana/schema: raw/dashboard/x for the classic JSON model, raw/composable/<panel>/panelcfg/x for
# each panel's options); there is no JSON Schema file in that package or in grafana-foundation-sdk.
# ts-json-schema-generator converts the types mechanically (additionalProperties: false, enums as
# enum lists), so the tests validate against exactly what Grafana publishes.
set -eu
out=$1
mkdir -p "$out"
cd "$out"
[ -f package.json ] || echo '{"private": true}' > package.json
echo '{"compilerOptions": {"moduleResolution": "node", "skipLibCheck": true}}' > tsconfig.json
npm install --no-audit --no-fund --silent @grafana/schema@13.2.3 ts-json-schema-generator@2.10.0 typescript@5.9.3
raw=node_modules/@grafana/schema/dist/types/raw
gen() {  # gen FILE TYPE OUT
  npx --no-install ts-json-schema-generator --no-type-check --tsconfig tsconfig.json --path "$1" --type "$2" -o "$3.tmp"
  mv "$3.tmp" "$3"
}
# Panel plugin ids and the @grafana/schema folders holding their options types.
for p in timeseries:timeseries stat:stat table:table heatmap:heatmap state-timeline:statetimeline bargauge:bargauge; do
  gen "$raw/composable/${p#*:}/panelcfg/x/types.gen.d.ts" Options "panel-${p%%:*}.schema.json" &
done
wait
for p in timeseries stat table heatmap state-timeline bargauge; do test -s "panel-$p.schema.json"; done
gen "$raw/dashboard/x/types.gen.d.ts" Dashboard dashboard.schema.json
