$ErrorActionPreference = 'Stop'
$request = [Console]::In.ReadToEnd() | ConvertFrom-Json
$wanted = @($request.update_ids)
$session = New-Object -ComObject Microsoft.Update.Session
$session.ClientApplicationID = 'mssp'
$found = $session.CreateUpdateSearcher().Search("IsInstalled=0 and IsHidden=0 and Type='Software'")
$selected = New-Object -ComObject Microsoft.Update.UpdateColl
foreach ($u in $found.Updates) {
    if ($wanted -contains $u.Identity.UpdateID) {
        if (-not $u.EulaAccepted) { $u.AcceptEula() }
        $null = $selected.Add($u)
    }
}
$results = @()
$code = 0
$reboot = $false
if ($selected.Count -gt 0) {
    $downloader = $session.CreateUpdateDownloader()
    $downloader.Updates = $selected
    $null = $downloader.Download()
    $installer = $session.CreateUpdateInstaller()
    $installer.Updates = $selected
    $outcome = $installer.Install()
    $code = [int]$outcome.ResultCode
    $reboot = [bool]$outcome.RebootRequired
    for ($i = 0; $i -lt $selected.Count; $i++) {
        $u = $selected.Item($i)
        $r = $outcome.GetUpdateResult($i)
        $results += @{
            id = $u.Identity.UpdateID; title = $u.Title; kb = @($u.KBArticleIDs | ForEach-Object { [string]$_ })
            result_code = [int]$r.ResultCode; hresult = [int]$r.HResult; reboot_required = [bool]$r.RebootRequired
        }
    }
}
[Console]::Out.Write((@{ result_code = $code; reboot_required = $reboot; updates = $results } | ConvertTo-Json -Depth 4 -Compress))
