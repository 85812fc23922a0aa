// Checks a batch of KQL queries with Kusto.Language (npm @kusto/language-service-next).
//
// Reads one JSON document on stdin and writes one on stdout, so a whole test session pays the
// parser's start-up cost (about two seconds) once:
//
//   in:  {"modulePath": ".../node_modules/@kusto/language-service-next",
//         "databases": {"<db>": {"tables": {"<Table>": {"<Column>": "<type>", ...}},
//                                 "functions": [{"name", "parameters", "body"}]}},
//         "queries": [{"id", "text", "database", "tables": {optional extra tables}}]}
//   out: {"results": [{"id", "diagnostics": [{"severity", "code", "message", "start", "length"}],
//                      "columns": [{"name", "type"}], "tabular": bool}]}
//
// A query is analysed against exactly one database: a query meant for Defender XDR advanced
// hunting is checked against the tables that exist there, a Sentinel query against Sentinel's.
"use strict";

const fs = require("fs");
const path = require("path");

function loadKusto(modulePath) {
  // The package is a Bridge.NET build: the runtime must define the global `Bridge` before the
  // compiled library can load, and requiring the package's main entry alone fails.
  require(path.join(modulePath, "bridge.js"));
  require(path.join(modulePath, "Kusto.Language.Bridge.js"));
  return globalThis.Kusto.Language;
}

function schemaText(columns) {
  const parts = Object.entries(columns).map(([name, type]) => `['${name}']:${type}`);
  return "(" + parts.join(", ") + ")";
}

function tableSymbols(K, tables) {
  return Object.entries(tables || {}).map(
    ([name, columns]) => new K.Symbols.TableSymbol.$ctor7(name, schemaText(columns), null),
  );
}

function functionSymbols(K, functions) {
  return (functions || []).map(
    (fn) => new K.Symbols.FunctionSymbol.$ctor16(fn.name, fn.parameters, fn.body, null),
  );
}

function buildGlobals(K, name, database, extraTables) {
  const members = tableSymbols(K, database.tables)
    .concat(tableSymbols(K, extraTables))
    .concat(functionSymbols(K, database.functions));
  const symbol = new K.Symbols.DatabaseSymbol.ctor(name, members);
  return K.GlobalState.Default.WithDatabase(symbol);
}

function listOf(bridgeList) {
  const items = [];
  for (let i = 0; i < bridgeList.Count; i++) items.push(bridgeList.getItem(i));
  return items;
}

function analyse(K, request, query, globalsCache) {
  const database = request.databases[query.database];
  if (database === undefined) {
    return {
      id: query.id,
      diagnostics: [
        {
          severity: "Error",
          code: "CHECKER",
          message: `unknown database '${query.database}' for this query`,
          start: 0,
          length: 0,
        },
      ],
      columns: [],
      tabular: false,
    };
  }

  // Globals are rebuilt only when a query brings tables of its own (a DCR transform's `source`).
  const hasExtra = query.tables && Object.keys(query.tables).length > 0;
  let globals = hasExtra ? null : globalsCache.get(query.database);
  if (!globals) {
    globals = buildGlobals(K, query.database, database, query.tables);
    if (!hasExtra) globalsCache.set(query.database, globals);
  }

  const code = K.KustoCode.ParseAndAnalyze(query.text, globals);
  const diagnostics = listOf(code.GetDiagnostics()).map((d) => ({
    severity: String(d.Severity),
    code: String(d.Code),
    message: String(d.Message),
    start: d.Start,
    length: d.Length,
  }));

  const result = code.ResultType;
  const tabular = !!(result && result.Columns);
  const columns = tabular
    ? listOf(result.Columns).map((c) => ({ name: String(c.Name), type: String(c.Type.Name) }))
    : [];
  return { id: query.id, diagnostics, columns, tabular };
}

function main() {
  const request = JSON.parse(fs.readFileSync(0, "utf8"));
  const K = loadKusto(request.modulePath);
  const globalsCache = new Map();
  const results = request.queries.map((query) => analyse(K, request, query, globalsCache));
  process.stdout.write(JSON.stringify({ results }));
}

main();
