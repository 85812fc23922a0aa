// Optional: the Event Hubs namespace and hub the Defender XDR streaming API writes to, with the
// consumer group the function app reads through. Only Entra ID identities may send or receive
// (local SAS authentication is off).

@description('Name of the Event Hubs namespace.')
param namespaceName string

@description('Name of the event hub the streaming API writes to.')
param hubName string

@description('Consumer group the function app reads with.')
param consumerGroupName string

@description('Azure region of the namespace.')
param location string

@description('Partitions of the hub; more partitions let more function instances read in parallel.')
@minValue(1)
@maxValue(32)
param partitionCount int

@description('Days events stay in the hub (the Standard tier allows up to 7).')
@minValue(1)
@maxValue(7)
param messageRetentionInDays int

@description('Tags applied to the namespace.')
param tags object

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: namespaceName
  location: location
  tags: tags
  // Standard: the Basic tier has a single consumer group, and the pipeline needs its own.
  sku: {
    name: 'Standard'
    tier: 'Standard'
    capacity: 1
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
    isAutoInflateEnabled: false
  }
}

resource hub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: namespace
  name: hubName
  properties: {
    partitionCount: partitionCount
    messageRetentionInDays: messageRetentionInDays
  }
}

resource consumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {
  parent: hub
  name: consumerGroupName
  properties: {
    userMetadata: 'Read by the Defender coverage-gap function app.'
  }
}

output namespaceId string = namespace.id
output namespaceName string = namespace.name
output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
output hubName string = hub.name
output consumerGroupName string = consumerGroup.name
