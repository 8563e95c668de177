// Validate custom resources against the real CRD schemas: `node validate-crds.mjs docs.json`.
//
// Two checks from the same generated packages (@kubernetes-models/*, built from each operator's Go API types):
//  1. the ajv validator each model ships (types, enums, patterns, required fields): `new Model(doc).validate()`;
//  2. TypeScript's excess-property check against the model's interface, because the ajv schemas allow
//     unknown fields and a misspelt field (`honorLabel`) must fail too.
// Prints one line per problem ("<index> <kind>/<name>: <message>") and exits 1 if there is any.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import * as argocd from "@kubernetes-models/argo-cd/argoproj.io/v1alpha1";
import * as keda from "@kubernetes-models/keda/keda.sh/v1alpha1";
import * as monitoring from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const HERE = dirname(fileURLToPath(import.meta.url));
// apiVersion -> [module with the model classes, import path of the interfaces]
const GROUPS = {
  "monitoring.coreos.com/v1": [monitoring, "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1"],
  "keda.sh/v1alpha1": [keda, "@kubernetes-models/keda/keda.sh/v1alpha1"],
  "argoproj.io/v1alpha1": [argocd, "@kubernetes-models/argo-cd/argoproj.io/v1alpha1"],
};

const docs = JSON.parse(readFileSync(process.argv[2], "utf8"));
const problems = [];
const ts = [];
docs.forEach((doc, i) => {
  const where = `${i} ${doc.kind}/${doc.metadata?.name}`;
  const group = GROUPS[doc.apiVersion];
  const Model = group?.[0][doc.kind];
  if (!Model) {
    problems.push(`${where}: no schema for ${doc.apiVersion} ${doc.kind}`);
    return;
  }
  try {
    new Model(doc).validate();
  } catch (err) {
    problems.push(`${where}: ${err.message}`);
  }
  ts.push(`import type { I${doc.kind} as T${i} } from "${group[1]}/${doc.kind}";`);
  ts.push(`export const d${i}: T${i} = ${JSON.stringify(doc)};`);
});

if (ts.length) {
  // Inside node_modules so module resolution finds the packages; one declaration per document, so tsc
  // reports the first excess property of each.
  const work = join(HERE, "node_modules", ".gpulens-check");
  mkdirSync(work, { recursive: true });
  writeFileSync(join(work, "docs.ts"), ts.join("\n") + "\n");
  writeFileSync(join(work, "tsconfig.json"), JSON.stringify({
    compilerOptions: { strict: true, noEmit: true, module: "nodenext", moduleResolution: "nodenext",
      target: "es2022", skipLibCheck: true, types: [] },
    files: ["docs.ts"],
  }));
  try {
    execFileSync(join(HERE, "node_modules", ".bin", "tsc"), ["-p", join(work, "tsconfig.json")], { encoding: "utf8" });
  } catch (err) {
    for (const line of String(err.stdout || err.message).split("\n")) {
      const m = line.match(/^.*docs\.ts\((\d+),\d+\): (.*)$/);
      if (m) {
        const i = Math.floor((Number(m[1]) - 1) / 2);
        problems.push(`${i} ${docs[i].kind}/${docs[i].metadata?.name}: ${m[2]}`);
      } else if (line.trim()) {
        problems.push(`tsc: ${line}`);
      }
    }
  }
}

for (const p of problems) console.log(p);
process.exit(problems.length ? 1 : 0);
