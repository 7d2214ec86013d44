$ErrorActionPreference = 'Stop'
$request = [Console]::In.ReadToEnd() | ConvertFrom-Json
$admins = (Get-LocalGroup -SID 'S-1-5-32-544').Name
$user = Get-LocalUser -Name $request.user -ErrorAction SilentlyContinue
if ($null -eq $user) {
    [Console]::Out.Write((@{ exists = $false; administrators_group = $admins } | ConvertTo-Json -Compress))
    exit 0
}
$groups = @()
foreach ($group in @(Get-LocalGroup)) {
    $members = @(Get-LocalGroupMember -Group $group -ErrorAction SilentlyContinue | Where-Object { $_.SID -eq $user.SID })
    if ($members.Count -gt 0) { $groups += $group.Name }
}
[Console]::Out.Write((@{
    exists = $true; name = $user.Name; enabled = [bool]$user.Enabled; sid = $user.SID.Value
    full_name = [string]$user.FullName; password_set = ($null -ne $user.PasswordLastSet)
    groups = $groups; administrators_group = $admins
} | ConvertTo-Json -Depth 3 -Compress))
