<#
.SYNOPSIS
  Installs (or checks) windows_exporter from its GitHub release MSI. Idempotent.

.DESCRIPTION
  Run by the DSC configuration WindowsExporterDsc.ps1 (Script resource): with -TestOnly it
  only reports whether the node is already in the wanted state; without it, it brings the node
  there. The wanted state is: the MSI of -Version installed with the given port, collectors and
  firewall settings, and the windows_exporter service running and answering /health.

  Steps: download the MSI (TLS 1.2), verify its SHA256, run msiexec /i ... /qn with
  LISTEN_PORT, ENABLED_COLLECTORS and the firewall property for that version, log msiexec to
  a file under -StateDir, record the applied settings in state.json.
  Firewall property: ADDLOCAL=FirewallException from v0.29, ADD_FIREWALL_EXCEPTION=yes in
  0.26-0.28; REMOTE_ADDR restricts the rule's source addresses. Since 0.26 the MSI opens no
  port unless asked.
  Web config (TLS, basic auth): -WebConfig is the content, written before the install as UTF-8
  without a byte-order mark (exporter-toolkit cannot read a BOM or UTF-16, which PowerShell 5.1's
  Set-Content and Out-File may write; windows_exporter#2274); -WebConfigFile names a file already
  on the node. Either path goes to the MSI as EXTRA_FLAGS="--web.config.file=""<path>""" (absolute
  and quoted: a relative path fails under the service, #922), and must exist before the install
  because the MSI starts the service and rolls back if it fails (#2167).
#>
[CmdletBinding()]
param(
  [Parameter(Mandatory = $true)][ValidatePattern('^\d+\.\d+\.\d+$')][string]$Version,
  [Parameter(Mandatory = $true)][ValidatePattern('^[0-9a-fA-F]{64}$')][string]$Sha256,
  [ValidateRange(1, 65535)][int]$ListenPort = 9182,
  [ValidatePattern('^[a-z0-9_]+(,[a-z0-9_]+)*$')][string]$EnabledCollectors = 'cpu,memory,logical_disk,net,os,system,pagefile,time,container',
  [bool]$FirewallException = $true,
  [string]$RemoteAddresses = '',
  [string]$MsiUrl = '',
  [ValidatePattern('^$|^[A-Za-z]:\\[^"*?<>|:]+\.ya?ml$')][string]$WebConfigFile = '',
  [string]$WebConfig = '',
  [string]$StateDir = "$env:ProgramData\windows_exporter-install",
  [switch]$TestOnly
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

if ($WebConfig -and $WebConfigFile) { throw 'Give -WebConfig (content) or -WebConfigFile (a file on the node), not both' }
$webConfigPath = if ($WebConfig) { Join-Path $StateDir 'web-config.yml' } else { $WebConfigFile }
$noBom = New-Object System.Text.UTF8Encoding($false)

function Get-TextSha256([string]$Text) {
  $sha = [Security.Cryptography.SHA256]::Create()
  try { return [BitConverter]::ToString($sha.ComputeHash($noBom.GetBytes($Text))).Replace('-', '') }
  finally { $sha.Dispose() }
}

$wanted = [ordered]@{
  version            = $Version
  sha256             = $Sha256.ToUpperInvariant()
  listen_port        = $ListenPort
  enabled_collectors = $EnabledCollectors
  firewall_exception = $FirewallException
  remote_addresses   = $RemoteAddresses
  web_config_file    = $webConfigPath
  web_config_sha256  = if ($WebConfig) { Get-TextSha256 $WebConfig } else { '' }
}
$statePath = Join-Path $StateDir 'state.json'

function Test-Installed {
  if (-not (Test-Path $statePath)) { return $false }
  $applied = Get-Content -Raw $statePath | ConvertFrom-Json
  foreach ($key in $wanted.Keys) {
    $property = $applied.PSObject.Properties[$key]
    # A key the state predates (web_config_*) counts as empty, so adding it does not reinstall.
    $value = if ($null -eq $property) { '' } else { "$($property.Value)" }
    if ($value -ne "$($wanted[$key])") { return $false }
  }
  $service = Get-Service -Name windows_exporter -ErrorAction SilentlyContinue
  return ($null -ne $service -and $service.Status -eq 'Running')
}

if ($TestOnly) { return (Test-Installed) }
if (Test-Installed) { Write-Output "windows_exporter $Version already installed as wanted"; return }

New-Item -ItemType Directory -Force -Path $StateDir | Out-Null
if (-not $MsiUrl) {
  $MsiUrl = "https://github.com/prometheus-community/windows_exporter/releases/download/v$Version/windows_exporter-$Version-amd64.msi"
}
$msi = Join-Path $StateDir "windows_exporter-$Version-amd64.msi"
[Net.ServicePointManager]::SecurityProtocol = [Net.SecurityProtocolType]::Tls12
Invoke-WebRequest -UseBasicParsing -Uri $MsiUrl -OutFile $msi
$actual = (Get-FileHash -Algorithm SHA256 -Path $msi).Hash
if ($actual -ne $wanted.sha256) {
  Remove-Item -Force $msi
  throw "SHA256 mismatch for ${MsiUrl}: got $actual, want $($wanted.sha256)"
}

function Invoke-Msiexec([string[]]$Arguments, [string]$Log) {
  $proc = Start-Process -FilePath msiexec.exe -ArgumentList ($Arguments + @('/qn', '/norestart', '/l*v', "`"$Log`"")) -Wait -PassThru
  # 3010: success, reboot required later. The node is not rebooted from here.
  if ($proc.ExitCode -notin 0, 3010) { throw "msiexec $($Arguments -join ' ') failed with $($proc.ExitCode); see $Log" }
}

# Same version already installed with other settings: MSI properties only apply on a fresh
# install, so remove it first. Other versions are replaced by the MSI's major upgrade.
$stamp = Get-Date -Format 'yyyyMMddHHmmss'
if (Test-Path $statePath) {
  $applied = Get-Content -Raw $statePath | ConvertFrom-Json
  if ($applied.version -eq $Version) {
    Invoke-Msiexec @('/x', "`"$msi`"") (Join-Path $StateDir "msiexec-uninstall-$stamp.log")
  }
}

$properties = @("LISTEN_PORT=$ListenPort", "ENABLED_COLLECTORS=$EnabledCollectors")
if ($FirewallException) {
  $minor = [int]($Version.Split('.')[1]); $major = [int]($Version.Split('.')[0])
  if ($major -gt 0 -or $minor -ge 29) { $properties += 'ADDLOCAL=FirewallException' }
  else { $properties += 'ADD_FIREWALL_EXCEPTION=yes' }
  if ($RemoteAddresses) { $properties += "REMOTE_ADDR=$RemoteAddresses" }
}
if ($WebConfig) { [IO.File]::WriteAllText($webConfigPath, $WebConfig, $noBom) }
if ($webConfigPath) {
  if (-not (Test-Path -LiteralPath $webConfigPath)) {
    throw "web config $webConfigPath does not exist: the MSI would start the service, fail and roll back"
  }
  $properties += ('EXTRA_FLAGS="--web.config.file=""' + $webConfigPath + '"""')
}
Invoke-Msiexec (@('/i', "`"$msi`"") + $properties) (Join-Path $StateDir "msiexec-install-$Version-$stamp.log")

Set-Service -Name windows_exporter -StartupType Automatic
Start-Service -Name windows_exporter
# Fail the extension loudly if the exporter does not answer (wrong port, crashed collector).
# Any HTTP answer counts, as for the proxy's port discovery: with a web config the plain request
# gets 401 (basic auth) or Go's 400 for plain HTTP on a TLS port, and both prove it is serving.
$script:lastError = 'no attempt yet'
function Test-Answers {
  try {
    Invoke-WebRequest -UseBasicParsing -TimeoutSec 5 -Uri "http://127.0.0.1:$ListenPort/health" | Out-Null
    return $true
  } catch [System.Net.WebException] {
    if ($null -ne $_.Exception.Response) { return $true }
    $script:lastError = $_
    return $false
  } catch {
    $script:lastError = $_
    return $false
  }
}
$deadline = (Get-Date).AddSeconds(60)
while (-not (Test-Answers)) {
  if ((Get-Date) -gt $deadline) { throw "windows_exporter does not answer on port ${ListenPort}: $script:lastError" }
  Start-Sleep -Seconds 2
}
$wanted | ConvertTo-Json | Set-Content -Encoding UTF8 -Path $statePath
Write-Output "windows_exporter $Version installed on port $ListenPort"
