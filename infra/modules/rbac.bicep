// Every Azure role assignment of the deployment, in one place. Each one goes to the function
// app's managed identity, on the single resource that needs it, under a name derived from the
// scope, the principal and the role so that redeployments find the same assignment.
// Built-in role ids: https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
// API permissions (Defender, Microsoft Graph) are app roles, not Azure roles: see
// infra/scripts/grant_api_permissions.py.

@description('Object (principal) id of the function app\'s managed identity.')
param principalId string

@description('Name of the storage account the app uses (host state, deployment package, audit trail, blocklists, queues).')
param storageAccountName string

@description('Name of the data collection rule the app uploads rows through.')
param dataCollectionRuleName string

@description('Name of the Application Insights component the app sends telemetry to.')
param appInsightsName string

@description('Whether the streaming Event Hubs namespace is deployed.')
param enableStreaming bool

@description('Name of the Event Hubs namespace of the streaming API (used only when enableStreaming).')
param eventHubNamespaceName string

@description('Name of the event hub the streaming API writes to (used only when enableStreaming).')
param eventHubName string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource dataCollectionRule 'Microsoft.Insights/dataCollectionRules@2023-03-11' existing = {
  name: dataCollectionRuleName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource eventHubNamespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: eventHubNamespaceName
}

resource eventHub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' existing = {
  parent: eventHubNamespace
  name: eventHubName
}

// Flex Consumption reads its deployment package with the identity, and the Functions host keeps
// its locks and checkpoints in blobs; Owner (not Contributor) is what the Flex deployment
// storage documents. The same role covers the blocklist and dead-letter containers.
resource storageBlobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')
  scope: storage
  properties: {
    description: 'Storage Blob Data Owner: deployment package, host state, blocklists, dead letters.'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource storageTableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3')
  scope: storage
  properties: {
    description: 'Storage Table Data Contributor: the audit trail.'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource storageQueueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, '974c5e8b-45b9-4653-ba55-5f855dd0fb88')
  scope: storage
  properties: {
    description: 'Storage Queue Data Contributor: collector documents and fan-out work.'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '974c5e8b-45b9-4653-ba55-5f855dd0fb88')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The Logs Ingestion API checks this role on the rule itself; it can take up to 30 minutes to
// apply after the first deployment, and uploads answer 403 until it does.
resource dcrMonitoringMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(dataCollectionRule.id, principalId, '3913510d-42f4-4e42-8a64-420c390055eb')
  scope: dataCollectionRule
  properties: {
    description: 'Monitoring Metrics Publisher: upload rows through the data collection rule.'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '3913510d-42f4-4e42-8a64-420c390055eb')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// With local authentication off, Application Insights accepts telemetry only from an identity
// holding this role on the component.
resource appInsightsMonitoringMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, '3913510d-42f4-4e42-8a64-420c390055eb')
  scope: appInsights
  properties: {
    description: 'Monitoring Metrics Publisher: send telemetry with Entra ID authentication.'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '3913510d-42f4-4e42-8a64-420c390055eb')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource eventHubDataReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enableStreaming) {
  name: guid(eventHub.id, principalId, 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde')
  scope: eventHub
  properties: {
    description: 'Azure Event Hubs Data Receiver: read the Defender streaming API hub.'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
