// The whole Defender coverage-gap system: one resource group with the function app and what it
// needs, a Log Analytics workspace (new, or an existing one by id) with Microsoft Sentinel, the
// custom tables and the Logs Ingestion rule, the detection content, and optionally an Event Hubs
// hub for the Defender XDR streaming API. `azd up` provisions it and deploys the app; see
// docs/deploy.md for the API permissions that Bicep cannot grant.

targetScope = 'subscription'

@description('Name of the azd environment; seeds the resource group and resource names.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Azure region for every resource. With an existing workspace, use the workspace\'s region: the data collection rule must be in it.')
@minLength(1)
param location string

@description('Resource id of an existing Log Analytics workspace to use; empty creates a new one in the resource group.')
param existingWorkspaceResourceId string = ''

@description('Days the new workspace and the custom tables keep data.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 90

@description('Onboard Microsoft Sentinel on the workspace (harmless if it already is).')
param onboardSentinel bool = true

@description('Create the analytics rules from detections/.')
param deployAnalyticsRules bool = true

@description('Whether the analytics rules start enabled; false creates them disabled for review.')
param analyticsRulesEnabled bool = true

@description('True once the Microsoft Defender XDR connector sends the Device* tables to the workspace; rules that read them are created only then, because Sentinel refuses a rule over a missing table.')
param defenderXdrTablesPresent bool = false

@description('Let the app publish the MdeBlockedResources watchlist the network-events rule reads; grants the identity Microsoft Sentinel Contributor on the workspace.')
param publishWatchlist bool = true

@description('Alias of the watchlist of blocked domains and addresses; the network-events rule reads MdeBlockedResources.')
param watchlistAlias string = 'MdeBlockedResources'

@description('Deploy an Event Hubs namespace, hub and consumer group for the Defender XDR streaming API.')
param enableStreaming bool = false

@description('Partitions of the streaming hub.')
@minValue(1)
@maxValue(32)
param streamingPartitionCount int = 4

@description('Days events stay in the streaming hub.')
@minValue(1)
@maxValue(7)
param streamingRetentionInDays int = 1

@description('Most instances the Flex Consumption plan may scale out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory of each function instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Redundancy of the storage account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
param storageSkuName string = 'Standard_GRS'

@description('Defender for Endpoint API base URL; use the regional host (eu., us., uk., au.) if your tenant needs one.')
param mdeApiUrl string = 'https://api.security.microsoft.com'

@description('Object id of the Entra group the EDR-in-block-mode Intune policy targets (printed by infra/scripts/edr_block_mode_policy.py); empty until that step has run.')
param edrBlockModeGroupId string = ''

@description('A fleet with more devices than this is evaluated in queued shards (FANOUT_THRESHOLD_DEVICES); 0 never fans out.')
@minValue(0)
param fanOutThresholdDevices int = 50000

@description('About how many devices each fan-out shard evaluates (FANOUT_SHARD_DEVICES).')
@minValue(1)
param fanOutShardDevices int = 20000

@description('Tags applied to every resource, on top of azd-env-name.')
param tags object = {}

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var allTags = union(tags, { 'azd-env-name': environmentName })
var names = {
  resourceGroup: 'rg-${environmentName}'
  identity: 'id-${resourceToken}'
  storage: 'st${resourceToken}'
  plan: 'plan-${resourceToken}'
  functionApp: 'func-${resourceToken}'
  appInsights: 'appi-${resourceToken}'
  workspace: 'log-${resourceToken}'
  dataCollectionEndpoint: 'dce-${resourceToken}'
  dataCollectionRule: 'dcr-${resourceToken}'
  eventHubNamespace: 'evhns-${resourceToken}'
  eventHub: 'defender-stream'
  consumerGroup: 'coverage-pipeline'
}

// Storage layout the app settings point at.
var deploymentContainer = 'app-package-${take(names.functionApp, 32)}'
var blocklistContainer = 'blocklists'
var deadLetterContainer = 'dead-letters'
var stateContainer = 'pipeline-state' // last known modes and published list versions
var leaseContainer = 'pipeline-leases' // the cycle lease that keeps cycles from overlapping
var auditDetailsContainer = 'audit-details' // audit details too large for a table entity
var auditTable = 'AuditTrail'
var coverageTable = 'DeviceCoverage' // each device's latest coverage, for reads by device
var collectorQueue = 'collector-documents'
var fanOutQueue = 'device-fanout'

// An existing workspace may live in another resource group or subscription; its id says where.
var useExistingWorkspace = !empty(existingWorkspaceResourceId)
var workspaceIdParts = split(existingWorkspaceResourceId, '/')
var workspaceSubscriptionId = useExistingWorkspace ? workspaceIdParts[2] : subscription().subscriptionId
var workspaceResourceGroupName = useExistingWorkspace ? workspaceIdParts[4] : names.resourceGroup
var workspaceName = useExistingWorkspace ? workspaceIdParts[8] : names.workspace
var newWorkspaceResourceId = resourceId(workspaceSubscriptionId, workspaceResourceGroupName, 'Microsoft.OperationalInsights/workspaces', names.workspace)
var workspaceResourceId = useExistingWorkspace ? existingWorkspaceResourceId : newWorkspaceResourceId

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: names.resourceGroup
  location: location
  tags: allTags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: names.identity
    location: location
    tags: allTags
  }
}

module workspace 'modules/workspace.bicep' = if (!useExistingWorkspace) {
  name: 'workspace'
  scope: rg
  params: {
    name: names.workspace
    location: location
    retentionInDays: retentionInDays
    tags: allTags
  }
}

module customTables 'modules/custom-tables.bicep' = {
  name: 'custom-tables'
  scope: resourceGroup(workspaceSubscriptionId, workspaceResourceGroupName)
  params: {
    workspaceName: workspaceName
    retentionInDays: retentionInDays
  }
  dependsOn: [
    workspace
  ]
}

// Explicitly after the tables: a rule whose output table does not exist yet fails with
// InvalidOutputTable.
module ingestion 'modules/ingestion.bicep' = {
  name: 'ingestion'
  scope: rg
  params: {
    endpointName: names.dataCollectionEndpoint
    ruleName: names.dataCollectionRule
    location: location
    workspaceResourceId: workspaceResourceId
    tags: allTags
  }
  dependsOn: [
    customTables
  ]
}

module sentinel 'modules/sentinel.bicep' = {
  name: 'sentinel'
  scope: resourceGroup(workspaceSubscriptionId, workspaceResourceGroupName)
  params: {
    workspaceName: workspaceName
    location: location
    onboardSentinel: onboardSentinel
    deployAnalyticsRules: deployAnalyticsRules
    analyticsRulesEnabled: analyticsRulesEnabled
    defenderXdrTablesPresent: defenderXdrTablesPresent
    tags: allTags
  }
  dependsOn: [
    customTables
  ]
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: names.storage
    location: location
    skuName: storageSkuName
    containerNames: [
      deploymentContainer
      blocklistContainer
      deadLetterContainer
      stateContainer
      leaseContainer
      auditDetailsContainer
    ]
    tableNames: [
      auditTable
      coverageTable
    ]
    queueNames: [
      collectorQueue
      fanOutQueue
    ]
    snapshotPrefix: '${stateContainer}/snapshots/'
    tags: allTags
  }
}

module appInsights 'modules/app-insights.bicep' = {
  name: 'app-insights'
  scope: rg
  params: {
    name: names.appInsights
    location: location
    workspaceResourceId: workspaceResourceId
    tags: allTags
  }
  dependsOn: [
    workspace
  ]
}

module eventHubs 'modules/event-hubs.bicep' = if (enableStreaming) {
  name: 'event-hubs'
  scope: rg
  params: {
    namespaceName: names.eventHubNamespace
    hubName: names.eventHub
    consumerGroupName: names.consumerGroup
    location: location
    partitionCount: streamingPartitionCount
    messageRetentionInDays: streamingRetentionInDays
    tags: allTags
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    dataCollectionRuleName: ingestion.outputs.ruleName
    appInsightsName: appInsights.outputs.name
    enableStreaming: enableStreaming
    eventHubNamespaceName: names.eventHubNamespace
    eventHubName: names.eventHub
  }
  dependsOn: [
    eventHubs
  ]
}

// In the workspace's resource group, which may not be the app's: see the module's header.
module rbacWorkspace 'modules/rbac-workspace.bicep' = if (publishWatchlist) {
  name: 'rbac-workspace'
  scope: resourceGroup(workspaceSubscriptionId, workspaceResourceGroupName)
  params: {
    principalId: identity.outputs.principalId
    workspaceName: workspaceName
  }
  dependsOn: [
    workspace
  ]
}

// Identity-based connections only: `<connection>__credential` and `__clientId` make the Functions
// host and the SDKs use the user-assigned identity instead of a key.
var baseSettings = {
  AzureWebJobsStorage__accountName: storage.outputs.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.outputs.clientId
  AZURE_CLIENT_ID: identity.outputs.clientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.outputs.connectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.outputs.clientId};Authorization=AAD'
  MDE_AUTH: 'managed_identity'
  MDE_CLIENT_ID: identity.outputs.clientId
  MDE_API_URL: mdeApiUrl
  LOGS_INGESTION_ENDPOINT: ingestion.outputs.logsIngestionEndpoint
  LOGS_INGESTION_DCR_IMMUTABLE_ID: ingestion.outputs.ruleImmutableId
  STORAGE_BLOB_ENDPOINT: storage.outputs.blobEndpoint
  STORAGE_QUEUE_ENDPOINT: storage.outputs.queueEndpoint
  STORAGE_TABLE_ENDPOINT: storage.outputs.tableEndpoint
  AUDIT_TABLE_NAME: auditTable
  BLOCKLIST_CONTAINER: blocklistContainer
  DEAD_LETTER_CONTAINER: deadLetterContainer
  STATE_CONTAINER: stateContainer
  COVERAGE_TABLE_NAME: coverageTable
  CYCLE_SCHEDULE: '0 0 */6 * * *' // every six hours; NCRONTAB with seconds
  COLLECTOR_QUEUE: collectorQueue
  FANOUT_QUEUE: fanOutQueue
  // A fleet above the threshold is evaluated in queued shards of about this many devices each.
  FANOUT_THRESHOLD_DEVICES: string(fanOutThresholdDevices)
  FANOUT_SHARD_DEVICES: string(fanOutShardDevices)
  EDR_BLOCK_GROUP_ID: edrBlockModeGroupId
  // Empty turns the watchlist publication off (the app then lacks the role to write it anyway).
  SENTINEL_WORKSPACE_RESOURCE_ID: publishWatchlist ? workspaceResourceId : ''
  WATCHLIST_ALIAS: watchlistAlias
}
var streamingSettings = {
  DefenderStream__fullyQualifiedNamespace: enableStreaming ? eventHubs.outputs.fullyQualifiedNamespace : ''
  DefenderStream__credential: 'managedidentity'
  DefenderStream__clientId: identity.outputs.clientId
  DEFENDER_STREAM_HUB: names.eventHub
  DEFENDER_STREAM_CONSUMER_GROUP: names.consumerGroup
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    planName: names.plan
    name: names.functionApp
    location: location
    identityId: identity.outputs.id
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: deploymentContainer
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    appSettings: enableStreaming ? union(baseSettings, streamingSettings) : baseSettings
    serviceName: 'api'
    tags: allTags
  }
  // The host starts as soon as the app exists; its identity must already hold the storage roles.
  dependsOn: [
    rbac
  ]
}

// Outputs become azd environment values; each is named for what reads it.
output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output FUNCTION_APP_URL string = 'https://${functionApp.outputs.defaultHostName}'
output MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output LOGS_INGESTION_ENDPOINT string = ingestion.outputs.logsIngestionEndpoint
output LOGS_INGESTION_DCR_IMMUTABLE_ID string = ingestion.outputs.ruleImmutableId
output STORAGE_ACCOUNT_NAME string = storage.outputs.name
output WORKSPACE_RESOURCE_ID string = workspaceResourceId
output SENTINEL_ANALYTICS_RULE_COUNT int = sentinel.outputs.analyticsRuleCount
output STREAMING_EVENT_HUB_NAMESPACE_ID string = enableStreaming ? eventHubs.outputs.namespaceId : ''
output STREAMING_EVENT_HUB_NAME string = enableStreaming ? names.eventHub : ''
