/**
 * The newest delivery of a group, picked by the database in the same GROUP BY that counts the group: the MAX of
 * its update time (ISO text, which sorts as time does), key, kind and person joined by a unit separator (U+001F),
 * so both backends pick the same example. Neither a key nor a user id holds a control character (the planner
 * refuses such an id).
 */
export function problemExampleSql(backend: 'sqlite' | 'postgres'): string {
  const separator = backend === 'sqlite' ? 'char(31)' : 'chr(31)';
  return `updated_at || ${separator} || key || ${separator} || kind || ${separator} || user_id`;
}

export function parseProblemExample(text: string): { key: string; kind: string; userId: string; updatedAt: string } {
  const [updatedAt = '', key = '', kind = '', ...user] = text.split('\u001f');
  return { key, kind, userId: user.join('\u001f'), updatedAt };
}
