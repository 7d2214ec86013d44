$ErrorActionPreference = 'Stop'
[Console]::Out.Write((Get-CimInstance -ClassName Win32_OperatingSystem).LastBootUpTime.ToUniversalTime().ToString('o'))
