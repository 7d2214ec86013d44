$ErrorActionPreference = 'Stop'
$request = [Console]::In.ReadToEnd() | ConvertFrom-Json
$session = New-Object -ComObject Microsoft.Update.Session
$session.ClientApplicationID = 'mssp'
$searcher = $session.CreateUpdateSearcher()
$found = $searcher.Search("IsInstalled=0 and IsHidden=0 and Type='Software'")
$updates = @()
foreach ($u in $found.Updates) {
    $categories = @($u.Categories | ForEach-Object { $_.Name })
    $security = ($categories -contains 'Security Updates') -or [bool]$u.MsrcSeverity
    if ($request.security_only -and -not $security) { continue }
    $updates += @{
        id = $u.Identity.UpdateID; revision = [int]$u.Identity.RevisionNumber; title = $u.Title
        kb = @($u.KBArticleIDs | ForEach-Object { [string]$_ }); severity = [string]$u.MsrcSeverity
        categories = $categories; downloaded = [bool]$u.IsDownloaded
        reboot_behavior = [int]$u.InstallationBehavior.RebootBehavior
        size = [int64]$u.MaxDownloadSize
    }
}
$info = New-Object -ComObject Microsoft.Update.SystemInfo
[Console]::Out.Write((@{ reboot_required = [bool]$info.RebootRequired; updates = $updates } | ConvertTo-Json -Depth 4 -Compress))
