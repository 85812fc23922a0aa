// The pipeline's custom tables. Their columns come from infra/generated/tables.json, which
// `python -m pipeline infra-content` writes from pipeline/tables.py, so the tables, the data
// collection rule and the rows the code uploads cannot drift apart.

@description('Name of the Log Analytics workspace that holds the tables (in this module\'s resource group).')
param workspaceName string

@description('Days the custom tables keep data.')
@minValue(30)
@maxValue(730)
param retentionInDays int

var content = loadJsonContent('../generated/tables.json')

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource tables 'Microsoft.OperationalInsights/workspaces/tables@2022-10-01' = [
  for table in content.tables: {
    parent: workspace
    name: table.name
    properties: {
      plan: 'Analytics'
      retentionInDays: retentionInDays
      schema: {
        name: table.name
        description: table.description
        columns: table.columns
      }
    }
  }
]

output tableNames array = [for (table, index) in content.tables: tables[index].name]
