#!/usr/bin/env node
// Seal one value with the independent npm peer @linode/kubeseal-encrypt.
//
//   node peer_seal.mjs [--peer linode-kubeseal-encrypt] --cert CERT.pem \
//        --scope strict|namespace-wide|cluster-wide --namespace NS --name NAME \
//        --value-file FILE
//
// Prints the base64 sealed value on stdout.
// Exit codes: 0 ok, 2 usage / input error, 3 the peer cannot do this
// (scope or non-UTF-8 value), 1 the peer library failed.
//
// What the peer really does (read from dist/index.js of 1.0.1):
//   encryptSecretItem(publicKeyPem, namespace, data: string)
//   - label is ALWAYS the namespace => only the namespace-wide scope;
//     the namespace must match /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/ (no "/", not
//     empty), so neither "ns/name" (strict) nor "" (cluster-wide) can be passed;
//   - takes an SPKI "PUBLIC KEY" PEM, not a certificate: this wrapper extracts
//     the public key from the certificate with node:crypto;
//   - data is a JS string, encoded as UTF-8 (TextEncoder): binary values that
//     are not valid UTF-8 cannot be sealed.
import { readFileSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import { parseArgs } from "node:util";

const PEER = "linode-kubeseal-encrypt";

function fail(code, msg) {
  process.stderr.write(`peer_seal.mjs: ${msg}\n`);
  process.exit(code);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      peer: { type: "string", default: PEER },
      cert: { type: "string" },
      scope: { type: "string", default: "strict" },
      namespace: { type: "string" },
      name: { type: "string" },
      "value-file": { type: "string" },
    },
    strict: true,
  }));
} catch (e) {
  fail(2, e.message);
}

if (args.peer !== PEER) fail(2, `unknown peer ${JSON.stringify(args.peer)} (only ${PEER})`);
if (!args.cert) fail(2, "--cert is required");
if (!args["value-file"]) fail(2, "--value-file is required");
if (!["strict", "namespace-wide", "cluster-wide"].includes(args.scope)) {
  fail(2, `bad --scope ${JSON.stringify(args.scope)}`);
}
if (args.scope !== "namespace-wide") {
  fail(3, `${PEER} cannot seal scope ${args.scope}: it always uses the namespace as the OAEP label (namespace-wide only)`);
}
if (args.namespace === undefined) fail(2, "--namespace is required");

let pubPem;
try {
  const certPem = readFileSync(args.cert, "utf8");
  pubPem = new X509Certificate(certPem).publicKey.export({ type: "spki", format: "pem" });
} catch (e) {
  fail(2, `cannot read certificate ${args.cert}: ${e.message}`);
}

let text;
try {
  const raw = args["value-file"] === "-" ? readFileSync(0) : readFileSync(args["value-file"]);
  text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(raw);
} catch (e) {
  if (e && e.code === "ERR_ENCODING_INVALID_ENCODED_DATA") {
    fail(3, `${PEER} only takes text (a JS string encoded as UTF-8); the value is not valid UTF-8`);
  }
  fail(2, `cannot read value file: ${e.message}`);
}

let mod;
try {
  mod = await import("@linode/kubeseal-encrypt");
} catch (e) {
  fail(2, `@linode/kubeseal-encrypt is not installed (npm ci --prefix tests/interop): ${e.message}`);
}

try {
  const sealed = await mod.encryptSecretItem(pubPem, args.namespace, text);
  process.stdout.write(sealed + "\n");
} catch (e) {
  fail(1, `${PEER} failed: ${e.message}`);
}
