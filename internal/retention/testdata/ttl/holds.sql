ts + toIntervalDay(30) TO VOLUME 'cold', ts + toIntervalDay(400) DELETE WHERE NOT (tenant_id IN ('umbrella') OR (tenant_id = 'wayne' AND agent_id IN ('agent-2', 'agent-7')))
