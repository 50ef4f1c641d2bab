# Example: install windows_exporter on the Windows node pools of an existing AKS cluster.
#
# First check whether you need it. AKS runs its own windows_exporter on Windows nodes in many
# regions (port 19182, moving to 19100 in the node image); where it runs there is nothing to
# install: deploy the proxy with the chart's default proxy.port (19100,19182,9182) or
# deploy/helm/values-aks-native.yaml and skip this module. AKS does not support custom VM
# extensions on its node scale sets ("use DaemonSets", AKS FAQ) and a node resource group
# lockdown blocks them outright, so this module is best-effort, for pools without the native
# exporter. deploy/README.md, "Getting windows_exporter onto the nodes", has the decision table.
#
#   terraform init && terraform apply \
#     -var resource_group_name=rg-aks -var cluster_name=aks1 \
#     -var 'windows_node_pools=["win1"]' -var storage_account_name=stdeployartifacts ...
#
# Afterwards roll the model out to existing instances (AKS node scale sets use the Manual
# upgrade policy; new instances get it on creation):
#   az vmss update-instances -g <node resource group> -n <vmss> --instance-ids '*'

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = ">= 3.90.0, < 5.0.0"
    }
  }
}

provider "azurerm" {
  features {}
}

variable "resource_group_name" {
  description = "Resource group of the AKS cluster."
  type        = string
}

variable "cluster_name" {
  description = "Name of the AKS cluster."
  type        = string
}

variable "windows_node_pools" {
  description = "Names of the cluster's Windows node pools (os_type = Windows)."
  type        = list(string)
}

variable "storage_account_name" {
  description = "Existing storage account for the DSC package."
  type        = string
}

variable "storage_account_resource_group_name" {
  description = "Resource group of the storage account."
  type        = string
}

data "azurerm_kubernetes_cluster" "this" {
  name                = var.cluster_name
  resource_group_name = var.resource_group_name
}

# AKS puts each node pool's scale set in the node resource group (MC_*) and tags it with the
# pool name; the provider does not export the scale set ids, so look them up by that tag.
data "azurerm_resources" "windows_vmss" {
  for_each = toset(var.windows_node_pools)

  resource_group_name = data.azurerm_kubernetes_cluster.this.node_resource_group
  type                = "Microsoft.Compute/virtualMachineScaleSets"
  required_tags = {
    "aks-managed-poolName" = each.value
  }
}

module "windows_exporter" {
  source = "../../modules/windows-exporter-vmss"

  vmss_ids = flatten([for pool in data.azurerm_resources.windows_vmss : pool.resources[*].id])

  windows_exporter_version = "0.31.3"
  # sha256sums.txt of the v0.31.3 release, line windows_exporter-0.31.3-amd64.msi. Placeholder:
  # replace with the published value before applying.
  msi_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

  listen_port        = 9182
  enabled_collectors = ["cpu", "memory", "logical_disk", "net", "os", "system", "pagefile", "time", "container"]
  firewall_exception = true
  # Pod CIDR (kubenet/overlay) so only pods, i.e. the proxy, reach the exporter.
  firewall_remote_addresses = [data.azurerm_kubernetes_cluster.this.network_profile[0].pod_cidr]
  # TLS or basic auth on the exporter: the content of an exporter-toolkit web config (written to
  # the node), or web_config_file = "C:\\ProgramData\\windows_exporter\\web-config.yml" for a
  # file already there. The certificate and key files it names must be on the node first.
  # web_config = file("${path.module}/web-config.yml")

  storage_account_name                = var.storage_account_name
  storage_account_resource_group_name = var.storage_account_resource_group_name
  storage_container_name              = "deploy-artifacts"
  package_sas_expiry                  = "2027-01-01T00:00:00Z"
}

output "extension_ids" {
  description = "Extension id per Windows scale set."
  value       = module.windows_exporter.extension_ids
}
