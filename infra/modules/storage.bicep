// The function app's storage account: host state and the deployment package (blob), the audit
// trail (tables), blocklists and dead letters (blob containers), collector documents and fan-out
// work (queues). Only Entra ID identities get in: shared keys are off, so no connection string
// exists to leak, and TLS below 1.2 is refused.

@description('Name of the storage account (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region of the storage account.')
param location string

@description('Redundancy of the storage account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
param skuName string

@description('Blob containers to create: the deployment package container and the app\'s own.')
param containerNames array

@description('Tables to create for the audit trail.')
param tableNames array

@description('Queues to create.')
param queueNames array

@description('Days a deleted blob or container can still be restored.')
@minValue(1)
@maxValue(365)
param deleteRetentionDays int = 7

@description('Blob name prefix (container/path) of the cycle snapshots that fan-out shards read.')
param snapshotPrefix string

@description('Days a cycle snapshot is kept before a lifecycle rule deletes it.')
@minValue(1)
@maxValue(365)
param snapshotRetentionDays int = 7

@description('Tags applied to the storage account.')
param tags object

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  // checkov:skip=CKV_AZURE_206:The redundancy is the skuName parameter (allowed values above; main.bicep defaults to Standard_GRS), which checkov cannot resolve.
  // checkov:skip=CKV_AZURE_35:The Flex Consumption app reaches storage over its public endpoint because this deployment has no virtual network; access is Entra ID RBAC only, as shared keys are off.
  // checkov:skip=CKV_AZURE_59:Same reason as CKV_AZURE_35: without a virtual network the public endpoint is the only path for the function app; every request still needs an Entra ID token with a data role.
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
        }
        file: {
          enabled: true
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: deleteRetentionDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: deleteRetentionDays
    }
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for containerName in containerNames: {
    parent: blobService
    name: containerName
    properties: {
      publicAccess: 'None'
    }
  }
]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for tableName in tableNames: {
    parent: tableService
    name: tableName
  }
]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queueName in queueNames: {
    parent: queueService
    name: queueName
  }
]

output id string = storage.id
output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table

// Each cycle stores its snapshot for the fan-out shards; nothing else reads old ones.
resource snapshotLifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'delete-old-cycle-snapshots'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                snapshotPrefix
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: snapshotRetentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
}
