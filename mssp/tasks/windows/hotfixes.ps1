$ErrorActionPreference = 'Stop'
$fixes = @(Get-HotFix | ForEach-Object {
    $on = $null
    if ($_.InstalledOn) { $on = $_.InstalledOn.ToString('yyyy-MM-dd') }
    @{ id = [string]$_.HotFixID; description = [string]$_.Description; installed_on = $on }
})
[Console]::Out.Write((ConvertTo-Json -InputObject $fixes -Depth 3 -Compress))
