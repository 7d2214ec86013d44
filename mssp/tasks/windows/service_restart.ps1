$ErrorActionPreference = 'Stop'
$request = [Console]::In.ReadToEnd() | ConvertFrom-Json
Restart-Service -Name ([string]$request.name) -Force
$service = Get-Service -Name ([string]$request.name)
$service.WaitForStatus('Running', [TimeSpan]::FromSeconds(60))
$service.Refresh()
[Console]::Out.Write((@{
    exists = $true; name = $service.Name; display_name = $service.DisplayName
    status = [string]$service.Status; start_type = [string]$service.StartType
} | ConvertTo-Json -Compress))
