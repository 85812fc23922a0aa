// Microsoft Sentinel on the workspace and the pipeline's detection content: analytics rules,
// hunting queries and workbooks. The content comes from infra/generated/*.json, which
// `python -m pipeline infra-content` writes from detections/. Sentinel refuses a rule whose query
// reads a table the workspace lacks, so main.bicep deploys this module after the custom tables,
// and rules over Defender XDR tables are created only when that connector already feeds the
// workspace.

@description('Name of the Log Analytics workspace (in this module\'s resource group).')
param workspaceName string

@description('Azure region for the workbooks.')
param location string

@description('Onboard Microsoft Sentinel on the workspace (harmless if it already is).')
param onboardSentinel bool

@description('Create the analytics rules.')
param deployAnalyticsRules bool

@description('Whether the created analytics rules start enabled.')
param analyticsRulesEnabled bool

@description('The Defender XDR connector already sends Device* tables to the workspace.')
param defenderXdrTablesPresent bool

@description('Tags applied to the workbooks.')
param tags object

var rules = loadJsonContent('../generated/analytics-rules.json')
var hunting = loadJsonContent('../generated/hunting-queries.json')
var workbooks = loadJsonContent('../generated/workbooks.json')

var rulesOnDefenderXdrTables = defenderXdrTablesPresent ? rules.onDefenderXdrTables : []
var rulesToDeploy = deployAnalyticsRules ? concat(rules.onOwnTables, rulesOnDefenderXdrTables) : []

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource onboarding 'Microsoft.SecurityInsights/onboardingStates@2024-03-01' = if (onboardSentinel) {
  scope: workspace
  name: 'default'
  properties: {}
}

// The rule's resource name is the rule's id in detections/, so a redeployment updates it in place.
resource analyticsRules 'Microsoft.SecurityInsights/alertRules@2023-02-01' = [
  for rule in rulesToDeploy: {
    scope: workspace
    name: rule.name
    kind: 'Scheduled'
    properties: union(rule.properties, { enabled: analyticsRulesEnabled })
    dependsOn: [
      onboarding
    ]
  }
]

resource huntingQueries 'Microsoft.OperationalInsights/workspaces/savedSearches@2020-08-01' = [
  for query in hunting.queries: {
    parent: workspace
    name: query.name
    properties: {
      category: 'Hunting Queries'
      displayName: query.displayName
      query: query.query
      version: 2
      tags: query.tags
    }
    dependsOn: [
      onboarding
    ]
  }
]

resource coverageWorkbooks 'Microsoft.Insights/workbooks@2023-06-01' = [
  for workbook in workbooks.workbooks: {
    name: guid(workspace.id, 'workbook', workbook.key)
    location: location
    tags: tags
    kind: 'shared'
    properties: {
      displayName: workbook.displayName
      serializedData: workbook.serializedData
      version: 'Notebook/1.0'
      sourceId: workspace.id
      category: 'sentinel'
    }
  }
]

output analyticsRuleCount int = length(rulesToDeploy)
output huntingQueryCount int = length(hunting.queries)
output workbookCount int = length(workbooks.workbooks)
