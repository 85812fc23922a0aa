<#
.SYNOPSIS
    Reports this device's Microsoft Defender Antivirus state as one endpoint-av-state/1 document.

.DESCRIPTION
    Reads Get-MpComputerStatus, Get-MpPreference, the registry values that decide passive mode,
    the state of the Defender-related services, the antivirus products Security Center knows about
    (root/SecurityCenter2 AntiVirusProduct, clients only) and a few OS facts. Builds one JSON
    document and either POSTs it to the coverage-gap function app or writes it to a file.

    Needs Windows PowerShell 5.1 and nothing else: no modules, no internet access beyond the
    function app. It sends this document and nothing else, to the one URL it is given.

    Works as an Intune remediation detection script (exit 0 = sent, 1 = failed), a scheduled task
    running as SYSTEM, or a third-party EDR's real-time-response script.

.PARAMETER FunctionUrl
    The function app's collector endpoint, e.g. https://<app>.azurewebsites.net/api/collector.
.PARAMETER FunctionKey
    The function key; sent in the x-functions-key header, never in the URL.
.PARAMETER OutFile
    Write the document to this file (UTF-8, no BOM) instead of, or as well as, sending it.
.PARAMETER TimeoutSec
    Timeout of the POST, default 30 seconds.

.EXAMPLE
    powershell.exe -NoProfile -ExecutionPolicy Bypass -File Collect-DefenderAvState.ps1 `
        -FunctionUrl https://contoso-mdegap.azurewebsites.net/api/collector -FunctionKey $key
.EXAMPLE
    powershell.exe -NoProfile -File Collect-DefenderAvState.ps1 -OutFile C:\ProgramData\av-state.json
#>
[CmdletBinding()]
param(
    [string]$FunctionUrl,
    [string]$FunctionKey,
    [string]$OutFile,
    [int]$TimeoutSec = 30
)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

# Properties copied verbatim. Names are Microsoft's; values keep the cmdlets' types.
$StatusProperties = @(
    'AMEngineVersion', 'AMProductVersion', 'AMRunningMode', 'AMServiceEnabled', 'AMServiceVersion',
    'AntispywareEnabled', 'AntispywareSignatureAge', 'AntispywareSignatureVersion',
    'AntivirusEnabled', 'AntivirusSignatureAge', 'AntivirusSignatureLastUpdated',
    'AntivirusSignatureVersion', 'BehaviorMonitorEnabled', 'ComputerState',
    'DefenderSignaturesOutOfDate', 'FullScanAge', 'IoavProtectionEnabled', 'IsTamperProtected',
    'IsVirtualMachine', 'NISEnabled', 'NISEngineVersion', 'NISSignatureVersion',
    'OnAccessProtectionEnabled', 'QuickScanAge', 'RealTimeProtectionEnabled', 'RebootRequired',
    'TamperProtectionSource'
)
$PreferenceProperties = @(
    'AttackSurfaceReductionRules_Actions', 'AttackSurfaceReductionRules_Ids', 'CloudBlockLevel',
    'CloudExtendedTimeout', 'DisableBehaviorMonitoring', 'DisableRealtimeMonitoring',
    'EnableControlledFolderAccess', 'EnableNetworkProtection', 'MAPSReporting', 'PUAProtection',
    'SubmitSamplesConsent'
)
# Where each registry value lives. ForcePassiveMode is a misspelling that circulates in guides;
# Defender ignores it, which is exactly why it is worth reporting.
$RegistryValues = [ordered]@{
    ForceDefenderPassiveMode          = 'HKLM:\SOFTWARE\Policies\Microsoft\Windows Advanced Threat Protection'
    ForcePassiveMode                  = 'HKLM:\SOFTWARE\Policies\Microsoft\Windows Advanced Threat Protection'
    PassiveRemediation                = 'HKLM:\SOFTWARE\Policies\Microsoft\Windows Advanced Threat Protection'
    AllowNetworkProtectionOnWinServer = 'HKLM:\SOFTWARE\Microsoft\Windows Defender\Windows Defender Exploit Guard\Network Protection'
    AllowNetworkProtectionDownLevel   = 'HKLM:\SOFTWARE\Microsoft\Windows Defender\Windows Defender Exploit Guard\Network Protection'
}
# Services of third-party antivirus products, used where Security Center cannot be asked
# (Windows Server has no root/SecurityCenter2, and it is empty when wscsvc is disabled).
$KnownAvServices = [ordered]@{
    CSFalconService = 'CrowdStrike Falcon Sensor'
    SentinelAgent   = 'SentinelOne Agent'
    CylanceSvc      = 'Cylance PROTECT'
    'Sophos MCS Agent' = 'Sophos Endpoint Agent'
    SepMasterService = 'Symantec Endpoint Protection'
    mfemms          = 'Trellix Endpoint Security'
    ekrn            = 'ESET Security'
    CbDefense       = 'VMware Carbon Black Cloud'
    TmListen        = 'Trend Micro Apex One'
}

function Select-Properties($Source, [string[]]$Names) {
    if ($null -eq $Source) { return $null }
    $result = [ordered]@{}
    foreach ($name in $Names) {
        $value = $Source.$name
        if ($value -is [datetime]) { $value = $value.ToUniversalTime().ToString('o') }
        elseif ($value -is [array]) { $value = @($value) }
        $result[$name] = $value
    }
    return $result
}

function Get-RegistryValue([string]$Path, [string]$Name) {
    try { return (Get-ItemProperty -Path $Path -Name $Name -ErrorAction Stop).$Name }
    catch { return $null }  # absent key or value: reported as null
}

function Get-ServiceState([string]$Name) {
    $service = Get-Service -Name $Name -ErrorAction SilentlyContinue
    if ($null -eq $service) { return $null }
    $startMode = (Get-CimInstance -ClassName Win32_Service -Filter "Name='$Name'" -ErrorAction SilentlyContinue).StartMode
    if ($startMode -eq 'Disabled') { return 'Disabled' }
    return $service.Status.ToString()  # a name such as Running, not ConvertTo-Json's number
}

function Get-AntivirusProducts([bool]$IsServer, [string]$WscState) {
    $products = @()
    if (-not $IsServer) {
        try {
            $products = @(Get-CimInstance -Namespace root/SecurityCenter2 -ClassName AntiVirusProduct -ErrorAction Stop |
                ForEach-Object { [ordered]@{ displayName = $_.displayName; productState = [int64]$_.productState } })
        } catch { $products = @() }
    }
    if ($IsServer -or $WscState -eq 'Disabled' -or $products.Count -eq 0) {
        foreach ($entry in $KnownAvServices.GetEnumerator()) {
            $running = Get-Service -Name $entry.Key -ErrorAction SilentlyContinue
            $listed = $products | Where-Object { $_.displayName -eq $entry.Value }
            if ($running -and -not $listed) {
                $products += [ordered]@{ displayName = $entry.Value; productState = $null }
            }
        }
    }
    return ,$products  # the comma keeps a one-item list a list in ConvertTo-Json
}

function Get-MdeDeviceId {
    # The sensor stores the MDE machine id (40 hex digits) here once onboarded.
    $id = Get-RegistryValue 'HKLM:\SOFTWARE\Microsoft\Windows Advanced Threat Protection' 'senseId'
    if ($id -match '^[0-9a-fA-F]{40}$') { return $id.ToLowerInvariant() }
    return $null
}

function Get-Onboarded {
    $state = Get-RegistryValue 'HKLM:\SOFTWARE\Microsoft\Windows Advanced Threat Protection\Status' 'OnboardingState'
    return ($state -eq 1)
}

function New-Document {
    $os = Get-CimInstance -ClassName Win32_OperatingSystem
    $isServer = $os.ProductType -ne 1  # 1 workstation, 2 domain controller, 3 server

    $status = $null
    $preference = $null
    try { $status = Select-Properties (Get-MpComputerStatus) $StatusProperties } catch { }
    try { $preference = Select-Properties (Get-MpPreference) $PreferenceProperties } catch { }

    $registry = [ordered]@{}
    foreach ($entry in $RegistryValues.GetEnumerator()) {
        $registry[$entry.Key] = Get-RegistryValue $entry.Value $entry.Key
    }
    $services = [ordered]@{}
    foreach ($name in 'WinDefend', 'WdNisDrv', 'Sense', 'wscsvc') {
        $services[$name] = Get-ServiceState $name
    }

    return [ordered]@{
        schema           = 'endpoint-av-state/1'
        collectedAt      = (Get-Date).ToUniversalTime().ToString('yyyy-MM-ddTHH:mm:ssZ')
        device           = [ordered]@{
            name        = $env:COMPUTERNAME
            mdeDeviceId = Get-MdeDeviceId
            osCaption   = [string]$os.Caption
            osVersion   = [string]$os.Version
            productType = $(if ($isServer) { 'server' } else { 'client' })
            onboarded   = Get-Onboarded
        }
        mpComputerStatus = $status
        mpPreference     = $preference
        registry         = $registry
        services         = $services
        thirdPartyAv     = Get-AntivirusProducts $isServer $services['wscsvc']
    }
}

if (-not $FunctionUrl -and -not $OutFile) {
    Write-Error 'Give -FunctionUrl (with -FunctionKey) or -OutFile.'
    exit 2
}

try {
    $json = New-Document | ConvertTo-Json -Depth 6 -Compress
    if ($OutFile) {
        [System.IO.File]::WriteAllText($OutFile, $json, (New-Object System.Text.UTF8Encoding $false))
    }
    if ($FunctionUrl) {
        if (-not $FunctionUrl.StartsWith('https://')) { throw 'FunctionUrl must be https' }
        [Net.ServicePointManager]::SecurityProtocol = [Net.SecurityProtocolType]::Tls12
        $body = [System.Text.Encoding]::UTF8.GetBytes($json)
        Invoke-RestMethod -Method Post -Uri $FunctionUrl -Body $body -TimeoutSec $TimeoutSec `
            -ContentType 'application/json; charset=utf-8' -UseBasicParsing `
            -Headers @{ 'x-functions-key' = $FunctionKey } | Out-Null
    }
    Write-Output "endpoint-av-state/1 collected for $env:COMPUTERNAME"
    exit 0
} catch {
    # The message names what failed; the function key is never printed.
    Write-Output "endpoint-av-state/1 failed: $($_.Exception.Message)"
    exit 1
}
