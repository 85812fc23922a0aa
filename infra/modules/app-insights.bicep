// Application Insights for the function app, stored in the workspace. Local (instrumentation key)
// authentication is off: telemetry is accepted only with an Entra ID token, so the connection
// string in the app settings is an address, not a credential.

@description('Name of the Application Insights component.')
param name string

@description('Azure region of the component.')
param location string

@description('Resource id of the Log Analytics workspace that stores the telemetry.')
param workspaceResourceId string

@description('Tags applied to the component.')
param tags object

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: name
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    DisableLocalAuth: true
    IngestionMode: 'LogAnalytics'
    WorkspaceResourceId: workspaceResourceId
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

output id string = appInsights.id
output name string = appInsights.name
output connectionString string = appInsights.properties.ConnectionString
