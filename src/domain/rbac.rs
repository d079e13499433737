//! Staff roles and what each may do. The table below is the single source of
//! truth: admin routes declare the permission they need, and a role grants a fixed
//! set of permissions. Nothing is granted by default.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including staff management.
    Owner,
    /// Products, variants, categories and stock levels.
    CatalogManager,
    /// Warehouse work: reads the catalog, moves stock, fulfils orders.
    Fulfilment,
    /// Customer service: reads orders and customers, refunds within limits.
    Support,
    /// Read-only access to everything that is not a secret, including the audit log.
    Analyst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Permission {
    CatalogRead,
    CatalogWrite,
    InventoryRead,
    InventoryWrite,
    OrdersRead,
    OrdersFulfil,
    OrdersRefund,
    CustomersRead,
    /// Customer data staff may change (segments).
    CustomersManage,
    StaffManage,
    /// Shipping options, tax rates and other shop-wide settings.
    SettingsManage,
    /// The job queue: inspect jobs, retry dead ones.
    JobsManage,
    AuditRead,
    /// Promotions, their codes and redemptions.
    PromotionsRead,
    PromotionsManage,
}

impl Permission {
    pub const ALL: [Permission; 15] = [
        Permission::CatalogRead,
        Permission::CatalogWrite,
        Permission::InventoryRead,
        Permission::InventoryWrite,
        Permission::OrdersRead,
        Permission::OrdersFulfil,
        Permission::OrdersRefund,
        Permission::CustomersRead,
        Permission::CustomersManage,
        Permission::StaffManage,
        Permission::SettingsManage,
        Permission::JobsManage,
        Permission::AuditRead,
        Permission::PromotionsRead,
        Permission::PromotionsManage,
    ];

    /// The OAuth-style scope name used in the OpenAPI document and in errors.
    pub const fn scope(self) -> &'static str {
        match self {
            Permission::CatalogRead => "catalog:read",
            Permission::CatalogWrite => "catalog:write",
            Permission::InventoryRead => "inventory:read",
            Permission::InventoryWrite => "inventory:write",
            Permission::OrdersRead => "orders:read",
            Permission::OrdersFulfil => "orders:fulfil",
            Permission::OrdersRefund => "orders:refund",
            Permission::CustomersRead => "customers:read",
            Permission::CustomersManage => "customers:manage",
            Permission::StaffManage => "staff:manage",
            Permission::SettingsManage => "settings:manage",
            Permission::JobsManage => "jobs:manage",
            Permission::AuditRead => "audit:read",
            Permission::PromotionsRead => "promotions:read",
            Permission::PromotionsManage => "promotions:manage",
        }
    }

    pub fn from_scope(scope: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.scope() == scope)
    }
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Owner, Role::CatalogManager, Role::Fulfilment, Role::Support, Role::Analyst];

    pub fn grants(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Owner => true,
            Role::CatalogManager => {
                matches!(
                    permission,
                    CatalogRead | CatalogWrite | InventoryRead | InventoryWrite | PromotionsRead | PromotionsManage
                )
            }
            Role::Fulfilment => matches!(permission, CatalogRead | InventoryRead | InventoryWrite | OrdersRead | OrdersFulfil),
            Role::Support => {
                matches!(permission, CatalogRead | OrdersRead | OrdersRefund | CustomersRead | CustomersManage | PromotionsRead)
            }
            Role::Analyst => {
                matches!(permission, CatalogRead | InventoryRead | OrdersRead | CustomersRead | AuditRead | PromotionsRead)
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::CatalogManager => "catalog_manager",
            Role::Fulfilment => "fulfilment",
            Role::Support => "support",
            Role::Analyst => "analyst",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == value)
    }
}

/// The highest total of refunds on one order that `role` may bring about
/// (`None`: no limit). Support staff settle complaints up to a shop-set amount;
/// anything larger needs an owner.
pub fn refund_limit(role: Role, support_limit: i64) -> Option<i64> {
    match role {
        Role::Owner => None,
        Role::Support => Some(support_limit),
        _ if role.grants(Permission::OrdersRefund) => None,
        _ => Some(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_manages_staff() {
        for role in Role::ALL {
            assert_eq!(role.grants(Permission::StaffManage), role == Role::Owner, "{role:?}");
        }
    }

    #[test]
    fn every_role_can_read_the_catalog_and_names_round_trip() {
        for role in Role::ALL {
            assert!(role.grants(Permission::CatalogRead));
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        for p in Permission::ALL {
            assert_eq!(Permission::from_scope(p.scope()), Some(p));
        }
    }

    #[test]
    fn fulfilment_ships_but_does_not_refund() {
        assert!(Role::Fulfilment.grants(Permission::OrdersFulfil));
        assert!(!Role::Fulfilment.grants(Permission::OrdersRefund));
        assert!(!Role::Analyst.grants(Permission::CatalogWrite));
    }

    #[test]
    fn only_support_is_limited_in_refunds() {
        assert_eq!(refund_limit(Role::Owner, 5000), None);
        assert_eq!(refund_limit(Role::Support, 5000), Some(5000));
        assert_eq!(refund_limit(Role::Fulfilment, 5000), Some(0));
    }
}
