$ErrorActionPreference = 'Stop'
$pending = (New-Object -ComObject Microsoft.Update.SystemInfo).RebootRequired -or
    (Test-Path 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired') -or
    (Test-Path 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending')
[Console]::Out.Write((ConvertTo-Json -InputObject @{ reboot_required = [bool]$pending } -Compress))
