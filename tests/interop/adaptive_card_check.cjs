// Parses Adaptive Cards with Microsoft's official `adaptivecards` package (the renderer's own
// object model, targeting schema 1.5) and fails on any parse or validation event. Used by
// crates/cli/tests/it/teams.rs: `node adaptive_card_check.cjs CARDS.json`, where the file holds
// a JSON array of cards. Prints one line per card: its version, its body element types, its
// action types (ShowCard actions followed by their inner actions in brackets).
"use strict";
const fs = require("fs");
const path = require("path");
// The package's `lib/` is ES modules with extension-less imports, which Node refuses; its
// `dist/` bundle is the same code as one UMD file.
const AC = require(path.join(__dirname, "..", "node_modules", "adaptivecards", "dist", "adaptivecards.js"));

function actions(list) {
  return list.map((a) => {
    const t = a.getJsonTypeName();
    if (a instanceof AC.ShowCardAction && a.card) {
      const inner = [];
      for (let i = 0; i < a.card.getActionCount(); i++) inner.push(a.card.getActionAt(i));
      return `${t}[${actions(inner).join(",")}]`;
    }
    return t;
  });
}

const cards = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
let failed = false;
for (const json of cards) {
  const context = new AC.SerializationContext(AC.Versions.v1_5);
  const card = new AC.AdaptiveCard();
  card.parse(json, context);
  const problems = [];
  for (let i = 0; i < context.eventCount; i++) problems.push(context.getEventAt(i).message);
  for (const e of card.validateProperties().validationEvents) problems.push(e.message);
  if (problems.length > 0) {
    console.error(`card ${JSON.stringify(json).slice(0, 200)}...: ${problems.join("; ")}`);
    failed = true;
    continue;
  }
  const body = [];
  for (let i = 0; i < card.getItemCount(); i++) body.push(card.getItemAt(i).getJsonTypeName());
  const acts = [];
  for (let i = 0; i < card.getActionCount(); i++) acts.push(card.getActionAt(i));
  console.log(`${card.version.toString()} ${body.join(",")} ${actions(acts).join(",")}`);
}
process.exit(failed ? 1 : 0);
