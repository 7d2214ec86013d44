$ErrorActionPreference = 'Stop'
$request = [Console]::In.ReadToEnd() | ConvertFrom-Json
$name = [string]$request.user
$done = @()
foreach ($action in @($request.actions)) {
    switch ([string]$action.op) {
        'create' {
            $password = ConvertTo-SecureString -String ([string]$action.password) -AsPlainText -Force
            $null = New-LocalUser -Name $name -Password $password -FullName ([string]$action.full_name) -Description 'managed by mssp'
        }
        'set_password' {
            $password = ConvertTo-SecureString -String ([string]$action.password) -AsPlainText -Force
            Set-LocalUser -Name $name -Password $password
        }
        'disable' { Disable-LocalUser -Name $name }
        'enable' { Enable-LocalUser -Name $name }
        'remove' { Remove-LocalUser -Name $name }
        'add_group' { Add-LocalGroupMember -Group ([string]$action.group) -Member $name }
        'remove_group' { Remove-LocalGroupMember -Group ([string]$action.group) -Member $name }
        default { throw "unknown action $($action.op)" }
    }
    $done += [string]$action.op
}
[Console]::Out.Write((ConvertTo-Json -InputObject @{ done = $done } -Compress))
