/** Socket.IO room names: one per chat room, one per user of a room (for private messages). */
export const roomKey = (room: string): string => `r:${room}`;
export const userKey = (room: string, userId: string): string => `u:${room}\n${userId}`;
/** One per user across all their rooms (the admin API disconnects a user everywhere). */
export const anyRoomKey = (userId: string): string => `uid:${userId}`;
