// The function app on the Flex Consumption plan, Python 3.11, running as the user-assigned
// identity. The deployment package sits in a blob container the identity reads with its own
// token; the app settings hold names and addresses only, never a key.

@description('Name of the Flex Consumption plan.')
param planName string

@description('Name of the function app.')
param name string

@description('Azure region of the plan and the app.')
param location string

@description('Resource id of the user-assigned managed identity the app runs as.')
param identityId string

@description('Blob endpoint of the storage account that holds the deployment package.')
param storageBlobEndpoint string

@description('Blob container that holds the deployment package.')
param deploymentContainerName string

@description('Most instances the plan may scale out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int

@description('Memory of each instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int

@description('App settings: names, addresses and switches only (no keys or secrets).')
param appSettings object

@description('azd service name in azure.yaml; azd finds the app to deploy to by this tag.')
param serviceName string

@description('Tags applied to the plan and the app.')
param tags object

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  // checkov:skip=CKV_AZURE_225:Zone redundancy of a Flex Consumption plan is offered in some regions only; the pipeline is a scheduled batch job that resumes on its next run after a zone outage.
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  // checkov:skip=CKV_AZURE_17:Client certificates are not used; devices running the collector present a function key over TLS instead.
  properties: {
    serverFarmId: plan.id
    // checkov:skip=CKV_AZURE_222:The collector on endpoints posts to the app over the internet, so public network access stays on; there is no virtual network in this deployment.
    httpsOnly: true
    keyVaultReferenceIdentity: identityId
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
    // Flex Consumption rejects FUNCTIONS_WORKER_RUNTIME; the runtime is set above instead.
    // checkov:skip=CKV_AZURE_212:Flex Consumption scales from zero per trigger; a minimum worker count is an App Service plan setting that does not apply.
    // checkov:skip=CKV_AZURE_213:The app serves no web site to probe; Flex Consumption restarts unhealthy instances itself and failures surface in Application Insights.
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        for setting in items(appSettings): {
          name: setting.key
          value: setting.value
        }
      ]
    }
  }
}

// No publishing with user names and passwords: azd and the CLI deploy with Entra ID tokens.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output id string = site.id
output name string = site.name
output defaultHostName string = site.properties.defaultHostName
