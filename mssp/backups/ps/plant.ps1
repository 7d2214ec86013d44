$ErrorActionPreference = 'Stop'
$request = [Console]::In.ReadToEnd() | ConvertFrom-Json
$path = [string]$request.path
$null = New-Item -ItemType Directory -Force -Path ([System.IO.Path]::GetDirectoryName($path))
[System.IO.File]::WriteAllText($path + '.tmp', [string]$request.content)
Move-Item -Force -LiteralPath ($path + '.tmp') -Destination $path
[Console]::Out.Write((Get-FileHash -Algorithm SHA256 -LiteralPath $path).Hash.ToLower())
