// The one role assignment that cannot live in rbac.bicep: the workspace may be an existing one in
// another resource group or subscription, and Bicep deploys a role assignment only inside the
// scope of its own file. main.bicep deploys this module to the workspace's resource group. The
// naming and description conventions are rbac.bicep's.
// Built-in role ids: https://learn.microsoft.com/azure/role-based-access-control/built-in-roles

@description('Object (principal) id of the function app\'s managed identity.')
param principalId string

@description('Name of the Log Analytics workspace with Microsoft Sentinel (in this module\'s resource group).')
param workspaceName string

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

// Writing a watchlist (Microsoft.SecurityInsights/watchlists/write) needs Microsoft Sentinel
// Contributor on the workspace; no narrower built-in role includes it.
// https://learn.microsoft.com/azure/sentinel/roles
resource sentinelContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, principalId, 'ab8e14d6-4a74-4a29-9ba8-549422addade')
  scope: workspace
  properties: {
    description: 'Microsoft Sentinel Contributor: publish the MdeBlockedResources watchlist the network-events rule reads.'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'ab8e14d6-4a74-4a29-9ba8-549422addade')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
