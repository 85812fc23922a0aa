// The Logs Ingestion path: a data collection endpoint and one data collection rule with a stream
// per custom table. Stream declarations and data flows are copied whole from
// infra/generated/tables.json. The tables must exist before the rule is created, or Azure
// Monitor answers InvalidOutputTable; main.bicep makes this module depend on the tables module.

@description('Name of the data collection endpoint.')
param endpointName string

@description('Name of the data collection rule.')
param ruleName string

@description('Azure region of the endpoint and the rule; it must be the workspace\'s region.')
param location string

@description('Resource id of the Log Analytics workspace the rule writes to.')
param workspaceResourceId string

@description('Tags applied to the endpoint and the rule.')
param tags object

var content = loadJsonContent('../generated/tables.json')

resource endpoint 'Microsoft.Insights/dataCollectionEndpoints@2023-03-11' = {
  name: endpointName
  location: location
  tags: tags
  properties: {
    description: 'Logs Ingestion endpoint for the Defender coverage-gap pipeline.'
    networkAcls: {
      publicNetworkAccess: 'Enabled'
    }
  }
}

resource rule 'Microsoft.Insights/dataCollectionRules@2023-03-11' = {
  name: ruleName
  location: location
  tags: tags
  properties: {
    description: 'Rows the Defender coverage-gap pipeline uploads to its custom tables.'
    dataCollectionEndpointId: endpoint.id
    streamDeclarations: content.streamDeclarations
    destinations: {
      logAnalytics: [
        {
          name: 'workspace'
          workspaceResourceId: workspaceResourceId
        }
      ]
    }
    dataFlows: content.dataFlows
  }
}

output ruleName string = rule.name
output ruleImmutableId string = rule.properties.immutableId
output logsIngestionEndpoint string = endpoint.properties.logsIngestion.endpoint
