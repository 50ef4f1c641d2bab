<#
  DSC configuration applied by the Microsoft.Powershell DSC VM extension on every instance of
  the Windows node pools' scale sets. The install script's text is embedded in the compiled
  MOF (through $using:), so later consistency checks by the LCM do not depend on the
  extension's download folder still existing.
#>
Configuration WindowsExporter {
  param(
    [Parameter(Mandatory = $true)][string]$Version,
    [Parameter(Mandatory = $true)][string]$Sha256,
    [int]$ListenPort = 9182,
    [string]$EnabledCollectors = 'cpu,memory,logical_disk,net,os,system,pagefile,time,container',
    [bool]$FirewallException = $true,
    [string]$RemoteAddresses = '',
    [string]$MsiUrl = '',
    [string]$WebConfigFile = '',
    [string]$WebConfig = ''
  )
  Import-DscResource -ModuleName PSDesiredStateConfiguration

  $InstallScript = Get-Content -Raw -Path (Join-Path $PSScriptRoot 'install-windows-exporter.ps1')

  Node localhost {
    Script WindowsExporter {
      GetScript  = {
        $service = Get-Service -Name windows_exporter -ErrorAction SilentlyContinue
        @{ Result = if ($service) { "$($service.Status)" } else { 'absent' } }
      }
      TestScript = {
        & ([scriptblock]::Create($using:InstallScript)) -Version $using:Version -Sha256 $using:Sha256 `
          -ListenPort $using:ListenPort -EnabledCollectors $using:EnabledCollectors `
          -FirewallException $using:FirewallException -RemoteAddresses $using:RemoteAddresses `
          -MsiUrl $using:MsiUrl -WebConfigFile $using:WebConfigFile -WebConfig $using:WebConfig -TestOnly
      }
      SetScript  = {
        & ([scriptblock]::Create($using:InstallScript)) -Version $using:Version -Sha256 $using:Sha256 `
          -ListenPort $using:ListenPort -EnabledCollectors $using:EnabledCollectors `
          -FirewallException $using:FirewallException -RemoteAddresses $using:RemoteAddresses `
          -MsiUrl $using:MsiUrl -WebConfigFile $using:WebConfigFile -WebConfig $using:WebConfig
      }
    }
  }
}
