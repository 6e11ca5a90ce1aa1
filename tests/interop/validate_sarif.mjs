// Validates a SARIF file against the SARIF 2.1.0 JSON schema that @microsoft/jest-sarif ships,
// with ajv. Exit 0 when valid; otherwise prints the schema errors and exits 1.
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const Ajv = require("ajv");
const fs = require("node:fs");
const schema = require("@microsoft/jest-sarif/lib/schemas/sarif-2.1.0-rtm.5.json");
const ajv = new Ajv({ allErrors: true, schemaId: "auto" });
ajv.addMetaSchema(require("ajv/lib/refs/json-schema-draft-04.json"));
const validate = ajv.compile(schema);
const doc = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
if (!validate(doc)) { console.error(JSON.stringify(validate.errors, null, 1)); process.exit(1); }
console.log("valid SARIF 2.1.0");
