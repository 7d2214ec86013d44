$ErrorActionPreference = 'Stop'
$request = [Console]::In.ReadToEnd() | ConvertFrom-Json
$service = Get-Service -Name ([string]$request.name) -ErrorAction SilentlyContinue
if ($null -eq $service) {
    [Console]::Out.Write((@{ exists = $false; name = [string]$request.name } | ConvertTo-Json -Compress))
    exit 0
}
[Console]::Out.Write((@{
    exists = $true; name = $service.Name; display_name = $service.DisplayName
    status = [string]$service.Status; start_type = [string]$service.StartType
} | ConvertTo-Json -Compress))
