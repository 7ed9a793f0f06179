"""The CRM database: the Store and one repository module per table family; every SQL statement lives here."""
