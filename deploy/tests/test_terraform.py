"""Tests for deploy/terraform (windows_exporter on AKS Windows node scale sets).

No provider can be downloaded here, so there is no `terraform validate`. What is checked:
- `terraform fmt -check -recursive deploy/terraform`;
- every .tf parses (python-hcl2) and has the structure we rely on;
- the variables' validation blocks, run by real Terraform: variables.tf alone needs no provider,
  so `terraform init` + `terraform plan` in a scratch dir evaluates them offline;
- the PowerShell scripts statically (no PowerShell on Debian): parameters line up from
  Terraform to the DSC configuration to the install script, and the msiexec call carries the
  properties derived from them.

Run from the repo root: .venv/bin/pytest deploy/tests -k terraform
"""

import os
import pathlib
import re
import shutil
import subprocess

import hcl2
import pytest

import helpers

ROOT = pathlib.Path(__file__).resolve().parents[2]
TF = ROOT / "deploy" / "terraform"
MODULE = TF / "modules" / "windows-exporter-vmss"
SCRIPTS = MODULE / "scripts"
INSTALL = SCRIPTS / "install-windows-exporter.ps1"
DSC = SCRIPTS / "WindowsExporterDsc.ps1"
FAMILIES = ROOT / "deploy" / "prometheus" / "windows_exporter_metric_families.txt"
PROM_RULES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.rules.yml"))

ENV = {**os.environ, "TF_CLI_CONFIG_FILE": "/dev/null", "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}

# Variables that take any value of their type; every other variable must have a validation.
NO_VALIDATION_NEEDED = {"firewall_exception", "force_update_tag"}

VALID = {
    "vmss_ids": '["/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/MC_rg_aks1_westeurope/providers/Microsoft.Compute/virtualMachineScaleSets/akswin1"]',
    "windows_exporter_version": '"0.31.3"',
    "msi_sha256": '"' + "ab" * 32 + '"',
    "firewall_remote_addresses": '["10.244.0.0/16"]',
    "storage_account_name": '"stdeploy"',
    "storage_account_resource_group_name": '"rg-deploy"',
    "storage_container_name": '"deploy-artifacts"',
    "package_sas_expiry": '"2027-01-01T00:00:00Z"',
}


def tf_files():
    return sorted(TF.rglob("*.tf"))


def load(path):
    with open(path) as f:
        return hcl2.load(f)


def module_blocks(kind):
    out = {}
    for path in MODULE.glob("*.tf"):
        for block in load(path).get(kind, []):
            out.update(block)
    return out


def extension():
    resources = module_blocks("resource")
    return resources["azurerm_virtual_machine_scale_set_extension"]["windows_exporter"]


def ps_params(text, start_pattern):
    """Parameter names of the first param( ... ) block after start_pattern."""
    start = re.search(start_pattern, text).end()
    block = text[text.index("param(", start) + len("param"):]
    depth, end = 0, 0
    for i, ch in enumerate(block):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            end = i
            break
    # "[type]$Name" declarations; $true inside [Parameter(Mandatory = $true)] is not one.
    return re.findall(r"\]\$([A-Za-z0-9]+)", block[:end + 1])


# --------------------------------------------------------------------------- formatting and parsing


@pytest.fixture(scope="module")
def terraform():
    """Terraform is in the machine image (Debian 12 does not package it; .ci/install checks)."""
    return helpers.tool("terraform", "/usr/local/bin/terraform")


def test_terraform_fmt_clean(terraform):
    out = subprocess.run([terraform, "fmt", "-check", "-recursive", "-no-color", str(TF)],
                         capture_output=True, text=True, env=ENV, timeout=60)
    assert out.returncode == 0, f"terraform fmt would change: {out.stdout}{out.stderr}"


def test_all_hcl_parses():
    files = tf_files()
    assert {p.name for p in MODULE.glob("*.tf")} == {"versions.tf", "variables.tf", "main.tf", "outputs.tf"}
    assert any(p.parent.parent.name == "examples" for p in files)
    for path in files:
        load(path)


# --------------------------------------------------------------------------- structure


def test_required_providers_pinned():
    (terraform,) = [b for p in MODULE.glob("versions.tf") for b in load(p)["terraform"]]
    assert terraform["required_version"].startswith(">=")
    providers = {k: v for block in terraform["required_providers"] for k, v in block.items()}
    assert providers["azurerm"]["source"] == "hashicorp/azurerm"
    assert providers["archive"]["source"] == "hashicorp/archive"
    for p in providers.values():
        assert "<" in p["version"], "upper bound so a new major provider does not slip in"


def test_extension_runs_after_aks_bootstrap_and_uses_dsc():
    ext = extension()
    assert ext["provision_after_extensions"] == ["vmssCSE"]
    # AKS's vmssCSE is a CustomScriptExtension; Windows takes one extension per handler type.
    assert (ext["publisher"], ext["type"]) == ("Microsoft.Powershell", "DSC")
    assert ext["for_each"] == "${toset(var.vmss_ids)}"
    assert ext["virtual_machine_scale_set_id"] == "${each.value}"
    assert "configurationUrlSasToken" in ext["protected_settings"]
    assert "SasToken" not in ext["settings"], "the SAS belongs in protected_settings"


def test_extension_settings_name_existing_script_and_configuration():
    settings = extension()["settings"]
    script = re.search(r'\\"script\\": \\"([^"\\]+)\\"|"script": "([^"]+)"', settings)
    function = re.search(r'"function": "([^"]+)"', settings)
    script_name = next(g for g in script.groups() if g)
    assert (SCRIPTS / script_name).is_file()
    assert re.search(rf"^Configuration {function.group(1)} \{{", (SCRIPTS / script_name).read_text(), re.M)
    main = (MODULE / "main.tf").read_text()
    for name in re.findall(r'"([A-Za-z-]+\.ps1)"', main):
        assert (SCRIPTS / name).is_file(), f"main.tf packages {name}, which does not exist"


def test_parameters_line_up_terraform_dsc_install_script():
    settings = extension()["settings"]
    args = re.search(r'"configurationArguments": \{(.*?)\}, "privacy"', settings).group(1)
    # The DSC extension merges protectedSettings.configurationArguments (the web config's content).
    protected = re.search(r'"configurationArguments": \{(.*?)\}', extension()["protected_settings"]).group(1)
    tf_keys = re.findall(r'"([A-Za-z0-9]+)": ', args) + re.findall(r'"([A-Za-z0-9]+)": ', protected)
    assert len(tf_keys) == len(set(tf_keys)), tf_keys
    dsc_params = ps_params(DSC.read_text(), r"Configuration WindowsExporter")
    install_params = ps_params(INSTALL.read_text(), r"\[CmdletBinding\(\)\]")
    assert set(tf_keys) == set(dsc_params), (tf_keys, dsc_params)
    assert set(dsc_params) <= set(install_params)
    assert {"StateDir", "TestOnly"} <= set(install_params)
    # The DSC Script resource passes every configuration parameter through to the install script.
    dsc = DSC.read_text()
    for block in ("TestScript", "SetScript"):
        body = re.search(rf"{block}\s*=\s*\{{(.*?)\n      \}}", dsc, re.S).group(1)
        passed = re.findall(r"-([A-Za-z0-9]+) \$using:\1", body)
        assert set(passed) == set(dsc_params), (block, passed)
        assert ("-TestOnly" in body) == (block == "TestScript")


def test_every_variable_has_description_type_and_validation():
    variables = module_blocks("variable")
    assert len(variables) >= 12
    for name, var in variables.items():
        assert var.get("description", "").strip(), f"{name}: no description"
        assert "type" in var, f"{name}: no type"
        if name not in NO_VALIDATION_NEEDED:
            assert var.get("validation"), f"{name}: no validation"
            for v in var["validation"]:
                assert f"var.{name}" in v["condition"]
                assert v["error_message"].strip()


def test_outputs_have_descriptions():
    outputs = module_blocks("output")
    assert {"extension_ids", "listen_port", "msi_url", "package_url", "firewall_remote_addresses"} <= outputs.keys()
    for name, out in outputs.items():
        assert out.get("description", "").strip(), name


def test_defaults_agree_with_proxy_and_prometheus():
    variables = module_blocks("variable")
    # The proxy's PROXY_PORT default is 9182 (team contract).
    assert variables["listen_port"]["default"] == 9182
    assert re.search(r"\[int\]\$ListenPort = 9182", INSTALL.read_text())
    collectors = variables["enabled_collectors"]["default"]
    for script in (INSTALL, DSC):
        assert f"$EnabledCollectors = '{','.join(collectors)}'" in script.read_text()
    # The collectors the Prometheus rules read must be both enabled by default and required
    # by the validation.
    family_collector = {}
    for line in FAMILIES.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            collector, family = line.split()
            family_collector[family] = collector
    needed = {family_collector[m] for p in PROM_RULES for m in re.findall(r"\bwindows_[a-z0-9_]+", p.read_text())
              if m in family_collector}
    assert needed and needed <= set(collectors)
    required_validation = variables["enabled_collectors"]["validation"][2]["condition"]
    for collector in needed:
        # python-hcl2 drops the quotes inside expressions: [cpu, logical_disk, ...]
        required_list = required_validation.split("], var.enabled_collectors")[0]
        assert re.search(rf"\b{collector}\b", required_list), collector


def test_example_uses_module_and_finds_windows_vmss_by_pool_tag():
    (example,) = (TF / "examples").glob("*/main.tf")
    doc = load(example)
    (mod,) = [m for block in doc["module"] for m in block.values()]
    assert (example.parent / mod["source"]).resolve() == MODULE.resolve()
    variables = module_blocks("variable")
    required = {n for n, v in variables.items() if "default" not in v}
    assert required <= mod.keys(), f"example misses {required - mod.keys()}"
    data = {k: v for block in doc["data"] for k, v in block.items()}
    lookup = data["azurerm_resources"]["windows_vmss"]
    assert lookup["type"] == "Microsoft.Compute/virtualMachineScaleSets"
    assert "aks-managed-poolName" in lookup["required_tags"]


# --------------------------------------------------------------------------- validation blocks, real Terraform


@pytest.fixture(scope="module")
def variables_only(terraform, tmp_path_factory):
    """Scratch root module holding just variables.tf: plan evaluates the validations offline."""
    d = tmp_path_factory.mktemp("tfvars")
    shutil.copy(MODULE / "variables.tf", d / "variables.tf")
    out = subprocess.run([terraform, "init", "-input=false", "-no-color", "-backend=false"],
                         cwd=d, capture_output=True, text=True, env=ENV, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return terraform, d


def plan(variables_only, **overrides):
    terraform, d = variables_only
    values = {**VALID, **overrides}
    (d / "test.auto.tfvars").write_text("".join(f"{k} = {v}\n" for k, v in values.items() if v is not None))
    out = subprocess.run([terraform, "plan", "-input=false", "-no-color", "-lock=false", "-refresh=false"],
                         cwd=d, capture_output=True, text=True, env=ENV, timeout=120)
    return out.returncode, out.stdout + out.stderr


WEB_CONFIG = """<<EOT
tls_server_config:
  cert_file: C:\\ProgramData\\windows_exporter\\tls.crt
  key_file: C:\\ProgramData\\windows_exporter\\tls.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: C:\\ProgramData\\windows_exporter\\ca.crt
basic_auth_users:
  prometheus: $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG
EOT"""


def test_valid_values_pass(variables_only):
    rc, out = plan(variables_only)
    assert rc == 0, out
    rc, out = plan(variables_only, enabled_collectors='["cpu","memory","logical_disk","net","os","system","pagefile","time","service","process"]',
                   listen_port="9200", msi_url='"https://example.blob.core.windows.net/mirror/windows_exporter-0.31.3-amd64.msi"',
                   firewall_remote_addresses='["10.244.0.0/16", "fd00:10:244::/56"]', windows_exporter_version='"1.0.0"')
    assert rc == 0, out


@pytest.mark.parametrize("overrides", [
    {"web_config_file": r'"C:\\ProgramData\\windows_exporter\\web-config.yml"'},
    {"web_config_file": r'"d:\\Program Files\\windows_exporter\\web.yaml"'},
    {"web_config": WEB_CONFIG},
    {"web_config": '"basic_auth_users: {}"'},
])
def test_valid_web_config_passes(variables_only, overrides):
    rc, out = plan(variables_only, **overrides)
    assert rc == 0, out


@pytest.mark.parametrize("name,value,message", [
    ("windows_exporter_version", '"v0.31.3"', "MAJOR.MINOR.PATCH"),
    ("windows_exporter_version", '"0.31"', "MAJOR.MINOR.PATCH"),
    ("windows_exporter_version", '"0.25.1"', "0.26.0 or later"),
    ("msi_sha256", '"abc"', "64 hexadecimal"),
    ("listen_port", "0", "1 to 65535"),
    ("listen_port", "65536", "1 to 65535"),
    ("listen_port", "9182.5", "1 to 65535"),
    ("listen_port", "19100", "AKS's own windows_exporter"),
    ("listen_port", "19182", "AKS's own windows_exporter"),
    ("web_config_file", '"web-config.yml"', "absolute Windows path"),
    ("web_config_file", r'"\\\\server\\share\\web-config.yml"', "absolute Windows path"),
    ("web_config_file", r'"C:\\ProgramData\\web-config.json"', "absolute Windows path"),
    ("web_config_file", r'"\"C:\\ProgramData\\web-config.yml\""', "absolute Windows path"),
    ("web_config", '"just text"', "YAML mapping"),
    ("web_config", '"tls_server_config: {}\\nlisten_address: 0.0.0.0"', "only have the exporter-toolkit keys"),
    ("web_config", '"\\ufeffbasic_auth_users: {}"', "byte-order mark"),
    ("enabled_collectors", '["cpu","memory","logical_disk","net","os","system","Container"]', "lower case"),
    ("enabled_collectors", '["cpu","cpu","memory","logical_disk","net","os","system"]', "must not repeat"),
    ("enabled_collectors", '["cpu","memory","net","os","system"]', "must include"),
    ("firewall_remote_addresses", "[]", "at least one CIDR"),
    ("firewall_remote_addresses", '["10.244.0.0/33"]', "must be a CIDR"),
    ("vmss_ids", "[]", "at least one"),
    ("vmss_ids", '["akswin1"]', "scale set id"),
    ("msi_url", '"http://example.com/x.msi"', "https://"),
    ("extension_name", '"vmssCSE"', "vmssCSE"),
    ("storage_account_name", '"St-Deploy"', "3-24 lower case"),
    ("package_sas_expiry", '"next year"', "RFC 3339"),
])
def test_invalid_values_rejected(variables_only, name, value, message):
    rc, out = plan(variables_only, **{name: value})
    assert rc != 0, f"{name}={value} was accepted"
    flat = " ".join(out.split())
    assert "Invalid value for variable" in flat and message in flat, flat[-800:]


# --------------------------------------------------------------------------- PowerShell, statically


def test_install_script_msiexec_call():
    text = INSTALL.read_text()
    # Download from the GitHub release of the version, TLS 1.2, hash verified before use.
    assert "https://github.com/prometheus-community/windows_exporter/releases/download/v$Version/windows_exporter-$Version-amd64.msi" in text
    assert "Tls12" in text
    hash_at = text.index("Get-FileHash -Algorithm SHA256")
    install_at = text.index("@('/i'")
    assert hash_at < install_at
    assert re.search(r"if \(\$actual -ne \$wanted\.sha256\) \{\s*Remove-Item -Force \$msi\s*throw", text)
    # Properties derived from the parameters, quiet, no reboot, verbose log file.
    for prop in ('"LISTEN_PORT=$ListenPort"', '"ENABLED_COLLECTORS=$EnabledCollectors"',
                 "'ADDLOCAL=FirewallException'", "'ADD_FIREWALL_EXCEPTION=yes'", '"REMOTE_ADDR=$RemoteAddresses"'):
        assert prop in text, prop
    # The web config: an absolute, quoted path in EXTRA_FLAGS (msiexec doubles inner quotes), the
    # content written as UTF-8 without a BOM, and the file checked, all before msiexec runs.
    extra = """$properties += ('EXTRA_FLAGS="--web.config.file=""' + $webConfigPath + '\"\"\"')"""
    assert extra in text
    assert "New-Object System.Text.UTF8Encoding($false)" in text
    assert "[IO.File]::WriteAllText($webConfigPath, $WebConfig, $noBom)" in text
    assert text.index("WriteAllText($webConfigPath") < text.index(extra) < install_at
    assert text.index("Test-Path -LiteralPath $webConfigPath") < install_at
    assert "Set-Content -Encoding UTF8 -Path $webConfigPath" not in text, "Windows PowerShell writes a BOM then"
    assert "@('/qn', '/norestart', '/l*v'" in text
    # v0.29+ uses ADDLOCAL, 0.26-0.28 the older property.
    branch = re.search(r"if \(\$major -gt 0 -or \$minor -ge 29\) \{ \$properties \+= 'ADDLOCAL=FirewallException' \}\s*"
                       r"else \{ \$properties \+= 'ADD_FIREWALL_EXCEPTION=yes' \}", text)
    assert branch
    assert text.index("if ($FirewallException)") < branch.start()
    # Idempotent: -TestOnly and the early return compare with the recorded state.
    assert "if ($TestOnly) { return (Test-Installed) }" in text
    assert re.search(r"if \(Test-Installed\) \{.*return \}", text)
    assert "state.json" in text and text.rindex("Set-Content") > install_at
    # msiexec failures stop the run; 3010 (reboot later) is success.
    assert "-notin 0, 3010" in text and "$ErrorActionPreference = 'Stop'" in text


def test_scripts_are_ascii_and_free_of_tabs():
    # Windows PowerShell 5.1 reads BOM-less files as ANSI: keep them ASCII.
    for path in (INSTALL, DSC):
        raw = path.read_bytes()
        raw.decode("ascii")
        assert b"\t" not in raw
        assert raw.count(b"{") == raw.count(b"}"), path.name
        assert raw.count(b"(") == raw.count(b")"), path.name
