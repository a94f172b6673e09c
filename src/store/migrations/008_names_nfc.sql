-- Usernames and group names are read composed (NFC) from now on: a file saved on a Mac spells é
-- as e plus a combining accent, which was a different username, so the next night created a
-- second josé.m and deactivated the first. Stored usernames are composed here to match, except
-- where that would make two users of a tenant one (such a pair was made by that very confusion):
-- those are left as they are, `rosterd doctor` lists them, and the next import, whose rows match
-- the composed one, deactivates the other. normalize() needs a UTF-8 database; in any other,
-- names outside ASCII cannot be stored anyway.
DO $$
BEGIN
  IF current_setting('server_encoding') <> 'UTF8' THEN
    RETURN;
  END IF;
  UPDATE users u SET username = normalize(u.username, NFC), updated_at = now()
   WHERE u.username IS NOT NFC NORMALIZED
     AND NOT EXISTS (SELECT 1 FROM users o
                      WHERE o.tenant_id = u.tenant_id AND lower(o.username) = lower(normalize(u.username, NFC)))
     AND NOT EXISTS (SELECT 1 FROM users o
                      WHERE o.tenant_id = u.tenant_id AND o.id <> u.id AND o.username IS NOT NFC NORMALIZED
                        AND lower(normalize(o.username, NFC)) = lower(normalize(u.username, NFC)));
  -- Group names likewise (groups.csv is read composed too), or a Mac district's next groups.csv
  -- would make a second group of each accented one and empty the first.
  UPDATE groups g SET name = normalize(g.name, NFC)
   WHERE g.name IS NOT NFC NORMALIZED
     AND (g.is_default OR (
          NOT EXISTS (SELECT 1 FROM groups o
                       WHERE o.tenant_id = g.tenant_id AND NOT o.is_default AND lower(o.name) = lower(normalize(g.name, NFC)))
      AND NOT EXISTS (SELECT 1 FROM groups o
                       WHERE o.tenant_id = g.tenant_id AND NOT o.is_default AND o.id <> g.id AND o.name IS NOT NFC NORMALIZED
                         AND lower(normalize(o.name, NFC)) = lower(normalize(g.name, NFC)))));
END $$;
