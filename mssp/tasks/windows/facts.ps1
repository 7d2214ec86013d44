$ErrorActionPreference = 'Stop'
$os = Get-CimInstance -ClassName Win32_OperatingSystem
$cs = Get-CimInstance -ClassName Win32_ComputerSystem
$load = (@(Get-CimInstance -ClassName Win32_Processor) | Measure-Object -Property LoadPercentage -Average).Average
$cv = Get-ItemProperty -Path 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion'
$disks = @(Get-CimInstance -ClassName Win32_LogicalDisk -Filter 'DriveType=3' | ForEach-Object {
    @{ mount = $_.DeviceID; size = [int64]$_.Size; free = [int64]$_.FreeSpace; label = [string]$_.VolumeName }
})
$reboot = (Test-Path 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired') -or
    (Test-Path 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending')
$admins = Get-LocalGroup -SID 'S-1-5-32-544'
$members = @(Get-LocalGroupMember -SID 'S-1-5-32-544' | ForEach-Object { $_.Name })
$users = @(Get-LocalUser | ForEach-Object {
    $logon = $null
    if ($_.LastLogon) { $logon = $_.LastLogon.ToUniversalTime().ToString('o') }
    @{ name = $_.Name; enabled = [bool]$_.Enabled; sid = $_.SID.Value; last_logon = $logon; description = [string]$_.Description }
})
[Console]::Out.Write((@{
    hostname = $env:COMPUTERNAME
    os = @{
        caption = [string]$os.Caption; version = [string]$os.Version; build = [string]$os.BuildNumber
        ubr = [int]$cv.UBR; display_version = [string]$cv.DisplayVersion; architecture = [string]$os.OSArchitecture
    }
    last_boot = $os.LastBootUpTime.ToUniversalTime().ToString('o')
    uptime_seconds = [int64]((Get-Date) - $os.LastBootUpTime).TotalSeconds
    cpu = @{ count = [int]$cs.NumberOfLogicalProcessors; load_percent = [int]$load }
    memory = @{ total = [int64]$os.TotalVisibleMemorySize * 1024; free = [int64]$os.FreePhysicalMemory * 1024 }
    disks = $disks
    reboot_required = [bool]$reboot
    administrators_group = [string]$admins.Name
    administrators = $members
    users = $users
} | ConvertTo-Json -Depth 4 -Compress))
